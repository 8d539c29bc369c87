"""The one chunk cache (``hometwin.chunks.ChunkCache``): windows of any length and position cut
from fixed chunks hold the very values computed for the window alone — across a chunk's edge,
past the run's end (a planner's horizon), after a ``clear`` — and the cache stays bounded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hometwin.chunks import ChunkCache, steps_per_chunk
from hometwin.element import HomeContext

CTX = HomeContext(name="t", latitude=0.0, longitude=0.0, altitude_m=0.0, timezone="UTC",
                  start=pd.Timestamp("2025-06-01", tz="UTC"), step_s=60, n_steps=3 * 1440 + 100, seed=1)


def _fn(epoch_s: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise in time: each step's value from its own time only."""
    t = epoch_s.astype(float)
    return np.sin(t / 3600.0) * dt_s, (epoch_s % 86400 < 3600).astype(float)


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_windows_of_every_shape_equal_the_window_alone() -> None:
    calls: list[int] = []

    def fn(epoch_s: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(epoch_s))
        return _fn(epoch_s, dt_s)

    cache = ChunkCache.of_time(fn, CTX)
    assert cache.length == steps_per_chunk(60) == 1440
    cases = [(0, 1), (1439, 1), (1440, 1), (1430, 20), (100, 1440), (2000, 3000),
             (CTX.n_steps - 1, 1), (CTX.n_steps - 50, 200), (CTX.n_steps + 10, 5)]
    for i0, n in cases:
        got = cache.window(i0, n)
        assert _same(got, _fn(CTX.epoch_s(i0, n), 60)), (i0, n)
        assert len(got[0]) == n
    # the run's last chunk stops at the run's end: 100 steps, not a day
    assert 100 in calls and max(calls) == 3000


def test_single_steps_compute_each_chunk_once_and_copies_are_safe() -> None:
    calls: list[int] = []
    cache = ChunkCache.of_time(lambda e, dt: (calls.append(len(e)), _fn(e, dt)[0])[1], CTX)
    for i in range(2 * 1440 + 5):
        step = cache.window(i, 1)
        step[0] = -1e9  # the caller may modify what it got
    assert calls == [1440, 1440, 1440]
    assert cache.window(5, 1)[0] == _fn(CTX.epoch_s(5, 1), 60)[0][0]
    cache.clear()
    cache.window(5, 1)
    assert calls == [1440, 1440, 1440, 1440]


def test_named_chunks_cut_across_chunk_edges_and_stay_bounded() -> None:
    computed: list[int] = []

    def compute(c: int) -> dict[str, np.ndarray]:
        computed.append(c)
        steps = np.arange(c * 10, c * 10 + 10, dtype=float)
        return {"a": steps, "b": -steps}

    cache = ChunkCache(compute, 10, keep=2)
    got = cache.window(7, 25, ("a",))
    assert list(got) == ["a"] and got["a"].tolist() == list(range(7, 32))
    assert computed == [0, 1, 2, 3]
    assert len(cache._chunks) == 2  # the last two kept
    both = cache.window(31, 2)
    assert both["b"].tolist() == [-31.0, -32.0] and computed == [0, 1, 2, 3]
