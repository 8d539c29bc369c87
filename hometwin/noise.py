"""Randomness shared by the models and the planners: random numbers as a pure function of time
(:func:`counter_rng`) and the AR(1) noise process (written once: the weather's own AR(1) and the
planners' forecast error are the same process)."""

from __future__ import annotations

import numpy as np

from hometwin.lazy import lazy_module

sps = lazy_module("scipy.signal")


def counter_rng(seed: int, block: int) -> np.random.Generator:
    """A generator that depends only on (seed, block): randomness as a pure function of time.

    Elements draw the random numbers of time block ``block`` (a day, an hour …)
    from ``counter_rng(seed, block)``.  The numbers a step gets therefore never
    depend on how the run was cut into windows, on settling early, or on
    restoring a snapshot — the property DESIGN.md asks of every generator.

    Blocks are 2**128 Philox counters apart (the block index sits in the high
    words of the 256-bit counter): a block's stream advances its low words as
    it is drawn from and never runs into the next block's.
    """
    return np.random.Generator(np.random.Philox(key=seed % (1 << 64), counter=(int(block) % (1 << 64)) << 128))


def ar1(innovations: np.ndarray, phi: float, previous: float) -> np.ndarray:
    """AR(1) process ``x[i] = phi * x[i-1] + innovations[i]`` continuing from ``previous``."""
    y, _ = sps.lfilter([1.0], [1.0, -phi], innovations, zi=[phi * previous])
    return y


def unit_ar1(rng: np.random.Generator, n: int, dt_s: float, tau_h: float = 6.0) -> np.ndarray:
    """Unit-variance AR(1) noise at steps of ``dt_s`` with correlation time ``tau_h``, started in
    its stationary distribution (the first value a standard normal draw)."""
    phi = float(np.exp(-dt_s / 3600.0 / tau_h))
    z = rng.standard_normal(n)
    if n == 0:
        return z
    return np.concatenate([z[:1], ar1(np.sqrt(1.0 - phi * phi) * z[1:], phi, z[0])])
