"""Density compensation weights for non-Cartesian reconstruction.

Scale convention: weights ``w_j`` approximate the k-space volume around sample ``j`` in
Cartesian cells divided by ``prod(N)``, so that ``nufft_adjoint(w * nufft(f))`` is close to
``f`` where k-space is covered (the non-Cartesian analogue of ``ifft_centered``: a full
Cartesian grid has ``w = 1 / prod(N)``).
"""

from __future__ import annotations

import math

import numpy as np


from .nufft import NUFFTPlan

__all__ = ["pipe_menon_dcf", "ramp_dcf"]


def pipe_menon_dcf(coords, shape, *, n_iter: int = 30, plan: NUFFTPlan | None = None,
                   threads: int | None = None) -> np.ndarray:
    """Iterative density compensation of Pipe & Menon (MRM 41, 179, 1999).

    ``w <- w / (C w)`` from ``w = 1``, where ``(C w)_j = sum_i w_i sum_m phi(u_i - m)
    phi(u_j - m)`` is the gridding kernel convolution evaluated at the samples (spread then
    interpolate on the NUFFT's upsampled grid, no FFT). At convergence ``C w = 1``; for a
    locally uniform density ``rho`` (samples per grid cell) that is
    ``w = 1 / (rho (int phi)^(2d))``, so the result is rescaled by ``(int phi)^(2d) / prod(n)``
    to the module's convention (k-space volume per sample / ``prod(N)``).

    Parameters
    ----------
    coords : (..., d) array_like
        k-space coordinates (cycles per FOV).
    shape : sequence of int
        Image shape.
    n_iter : int
        Iterations (20-40 is usual).
    plan : NUFFTPlan, optional
        Reuse a plan for these coords (an ``eps = 1e-3`` plan is built otherwise).

    Returns
    -------
    weights : ndarray, shape ``coords.shape[:-1]``, float64.
    """
    if int(n_iter) < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter!r}")
    if plan is None:
        plan = NUFFTPlan(coords, shape, eps=1e-3, threads=threads)
    w = np.ones(plan.points_shape, np.complex128)
    for _ in range(int(n_iter)):
        conv = plan.spread_interp(w).real
        w = w / np.maximum(conv, 1e-12 * conv.max())
    scale = plan.kernel_integral() ** (2 * plan.ndim) / np.prod(plan.oversampled_shape)
    return w.real * scale


def ramp_dcf(coords, shape) -> np.ndarray:
    """Analytic radial density compensation ``w ∝ |k|^(d-1)`` (ramp in 2D, ``k^2`` in 3D).

    For radial trajectories (``coords`` of shape ``(n_spokes, n_readout, d)``, full or half
    spokes, uniform readout spacing ``dk``). The centre sample gets the weight of
    ``|k| = dk/4`` (2D) or ``dk / sqrt(12)`` (3D), the value that shares the central disc
    / ball of radius ``dk/2`` equally among the spokes. Scaled so that the weights sum to
    the volume of the sampled disc/ball (radius ``max |k|``) divided by ``prod(N)``.
    Radii are measured in the normalised frame ``k_a / N_a`` (anisotropic ``shape``).
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 3 or coords.shape[-1] not in (2, 3) or coords.shape[1] < 2:
        raise ValueError(f"ramp_dcf needs radial coords (n_spokes, n_readout, d), "
                         f"got {coords.shape}")
    d = coords.shape[-1]
    shp = np.asarray(shape, dtype=float)[:d]
    kn = coords / shp  # normalised, |kn| <= 1/2
    r = np.linalg.norm(kn, axis=-1)
    dk = float(np.median(np.linalg.norm(np.diff(kn, axis=1), axis=-1)))
    r_centre = dk / 4 if d == 2 else dk / math.sqrt(12)
    w = np.maximum(r, r_centre) ** (d - 1)
    rmax = r.max()
    volume = math.pi * rmax**2 if d == 2 else 4 / 3 * math.pi * rmax**3  # normalised units
    # a normalised volume V holds V * prod(N) Cartesian cells; weight = cells / prod(N)
    return w * (volume / w.sum())
