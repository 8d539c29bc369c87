"""Values that are a pure function of time, computed a chunk at a time and cut into windows.

Environment signals (the sun, the weather), the grid's prices and outages, timed appliances and a
geyser's draws depend on time (and the element's config) only.  An element computes them for a
fixed *chunk* of run steps — chunk ``c`` holds steps ``c*length … (c+1)*length − 1``, one day of
steps by default — and windows are sliced out of the cached chunks.  A step therefore gets
bit-for-bit the same value whether the run is cut into windows of 1 step or of 1440, whatever
order the windows come in (after a ``restore()``), in-process and over WAMP alike, and a live
twin asking for one step at a time pays the per-call cost of the computation once a day.

A chunk is what ``compute(c)`` returns: a mapping of named arrays (signals), a tuple of arrays or
one array, ``length`` values each.  Values of element-wise functions of time
(:meth:`ChunkCache.of_time`) may also be computed for a window alone (``direct``): a window of a
chunk or more, and one reaching past the run's end (a planner's horizon), where the last chunk
stops.  The cache is bounded (the last ``keep`` chunks used) and belongs to the element's
``setup``: a ``set`` builds a new element state, and with it a new cache.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Union

import numpy as np

#: A chunk's (and a window's) values: named arrays, a tuple of arrays or one array.
Values = Union[dict[str, np.ndarray], tuple[np.ndarray, ...], np.ndarray]


def steps_per_chunk(step_s: int, chunk_s: int = 86400) -> int:
    """Steps in one chunk: one day of steps (at least one step)."""
    return max(1, chunk_s // step_s)


def _cut(values: Values, a: int, b: int, names: tuple[str, ...] | None, copy: bool) -> Values:
    """Steps ``a … b − 1`` of a chunk (copies when ``copy``; ``names``: only these of a mapping)."""
    if isinstance(values, dict):
        return {k: (values[k][a:b].copy() if copy else values[k][a:b]) for k in (names or tuple(values))}
    if isinstance(values, tuple):
        return tuple(v[a:b].copy() if copy else v[a:b] for v in values)
    return values[a:b].copy() if copy else values[a:b]


def _join(parts: list[Values]) -> Values:
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}  # type: ignore[index]
    if isinstance(first, tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(first)))  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


class ChunkCache:
    """A bounded cache of computed chunks; ``compute(c)`` gives chunk ``c``.

    Chunk ``c`` holds run steps ``c*length … (c+1)*length - 1``; ``compute`` must return arrays of
    ``length`` values and depend on ``c`` only.  ``direct(i0, n)``, when given, computes the values
    of steps ``i0 … i0+n-1`` on their own, bit-identical to the chunks' (an element-wise function):
    it serves windows of ``length`` steps or more, and those reaching past ``end`` (the run's end:
    ``compute`` stops the chunk holding it there).
    """

    def __init__(self, compute: Callable[[int], Any], length: int, keep: int = 4,
                 direct: Callable[[int, int], Any] | None = None, end: int | None = None):
        self.compute = compute
        self.length = length
        self.keep = keep
        self.direct = direct
        self.end = end
        self._chunks: OrderedDict[int, Any] = OrderedDict()
        self._last: tuple[int, Any] | None = None  # the chunk used last (a live twin's next step is in it)

    @classmethod
    def of_time(cls, fn: Callable[[np.ndarray, float], Any], home: Any, length: int | None = None,
                keep: int = 4) -> "ChunkCache":
        """Chunks of ``fn(epoch_s, dt_s)``: an array or a tuple of arrays, one value per step,
        each depending only on that step's time (and the config ``fn`` reads) — element-wise
        numpy, so a window cut from a chunk holds the very values ``fn`` gives for the window
        alone.  ``home``: the element's :class:`~hometwin.element.HomeContext` (its steps and the
        run's end: the last chunk stops there, so ``fn`` never reads data past the run but for a
        window that asks for it); ``length``: a day of steps unless given."""
        length = steps_per_chunk(home.step_s) if length is None else length
        dt_s, n_steps = home.step_s, home.n_steps

        def compute(c: int) -> Any:
            i0 = c * length
            return fn(home.epoch_s(i0, min(length, n_steps - i0)), dt_s)

        def direct(i0: int, n: int) -> Any:
            return fn(home.epoch_s(i0, n), dt_s)

        return cls(compute, length, keep, direct=direct, end=n_steps)

    def clear(self) -> None:
        self._chunks.clear()
        self._last = None

    def chunk(self, c: int) -> Any:
        found = self._chunks.get(c)
        if found is not None:
            self._chunks.move_to_end(c)
        else:
            found = self._chunks[c] = self.compute(c)
            while len(self._chunks) > self.keep:
                self._chunks.popitem(last=False)
        self._last = (c, found)
        return found

    def window(self, i0: int, n: int, names: tuple[str, ...] | None = None) -> Any:
        """Values of steps ``i0 … i0+n-1`` (copies, safe to modify); ``names``: only these
        signals of a chunk of named arrays."""
        length, end = self.length, self.end
        if self.direct is not None and (n >= length or (end is not None and i0 + n > end)):
            return self.direct(i0, n)
        c0 = i0 // length
        a = i0 - c0 * length
        if a + n <= length:  # within one chunk: a step, most often
            last = self._last
            return _cut(last[1] if last is not None and last[0] == c0 else self.chunk(c0), a, a + n, names, True)
        c1 = (i0 + n - 1) // length
        return _join([_cut(self.chunk(c), max(i0 - c * length, 0), min(i0 + n - c * length, length), names, False)
                      for c in range(c0, c1 + 1)])
