"""Noise processes shared by the models and the planners (written once: the weather's own AR(1)
and the planners' forecast error are the same process)."""

from __future__ import annotations

import numpy as np

from hometwin.lazy import lazy_module

sps = lazy_module("scipy.signal")


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
