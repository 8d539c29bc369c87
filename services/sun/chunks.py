"""Serve window signals from fixed, cached chunks of the run.

Environment output is a pure function of time: an element computes it for a
fixed *chunk* of run steps (one day of steps by default) and slices windows out
of the cached chunks.  A step therefore gets bit-for-bit the same value whether
the run is cut into windows of 1 step or of 1440 steps, and whatever order the
windows come in (after a ``restore()``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np

Chunk = dict[str, np.ndarray]


def steps_per_chunk(step_s: int, chunk_s: int = 86400) -> int:
    """Steps in one chunk: one day of steps (at least one step)."""
    return max(1, chunk_s // step_s)


class ChunkCache:
    """A bounded cache of computed chunks; ``compute(c)`` gives chunk ``c``.

    Chunk ``c`` holds run steps ``c*length … (c+1)*length - 1``; ``compute`` must
    return arrays of exactly ``length`` values and depend on ``c`` only.
    """

    def __init__(self, compute: Callable[[int], Chunk], length: int, keep: int = 4):
        self.compute = compute
        self.length = length
        self.keep = keep
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()

    def clear(self) -> None:
        self._chunks.clear()

    def chunk(self, c: int) -> Chunk:
        found = self._chunks.get(c)
        if found is not None:
            self._chunks.move_to_end(c)
            return found
        found = self.compute(c)
        self._chunks[c] = found
        while len(self._chunks) > self.keep:
            self._chunks.popitem(last=False)
        return found

    def window(self, i0: int, n: int, names: tuple[str, ...] | None = None) -> Chunk:
        """Values of steps ``i0 … i0+n-1`` (copies, safe to modify)."""
        c0, c1 = i0 // self.length, (i0 + n - 1) // self.length
        if c0 == c1:
            chunk = self.chunk(c0)
            a = i0 - c0 * self.length
            keys = names or tuple(chunk)
            return {k: chunk[k][a:a + n].copy() for k in keys}
        parts = []
        for c in range(c0, c1 + 1):
            chunk = self.chunk(c)
            a = max(i0 - c * self.length, 0)
            b = min(i0 + n - c * self.length, self.length)
            parts.append({k: chunk[k][a:b] for k in (names or tuple(chunk))})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
