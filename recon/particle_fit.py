"""Parametric particle model for planned acquisitions: one complex amplitude per particle.

A voxel support cannot hold a particle whose centre is off the grid: its band-limited
image rings (Dirichlet kernel) far beyond any compact support, and 5-10 % of its energy
is left unexplained. The optics gives more than a support: a position and a size per
particle. Each particle is therefore modelled by its exact spectrum, a solid sphere of
diameter ``d`` at ``x``,

.. math::

    f_p(\\mathbf k) = \\frac{3(\\sin u - u \\cos u)}{u^3} e^{-2\\pi i \\mathbf k\\cdot\\mathbf x_p},
    \\qquad u = \\pi d_p |\\mathbf k|

(``k`` in cycles/mm, ``f_p(0) = 1`` so the amplitude is the particle's integrated signal in
voxel units, the DFT convention of :mod:`dualmode.conventions`). The data are
``y = G sum_p a_p f_p + n`` (``G`` the per-sample signal weights). Positions and sizes
from the optics are refined by Gauss-Newton with variable projection (the amplitudes
are eliminated by least squares at every step; Golub & Pereyra, SIAM J. Numer. Anal. 10,
413 (1973)): the columns ``f_p``, ``d f_p / d x_p`` and ``d f_p / d d_p`` are fitted and
the derivative coefficients over ``a_p`` give the parameter steps.
"""

from __future__ import annotations

import numpy as np


def _form(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, float)
    small = np.abs(u) < 1e-3
    us = np.where(small, 1.0, u)
    return np.where(small, 1.0 - u**2 / 10.0, 3.0 * (np.sin(us) - us * np.cos(us)) / us**3)


def _k_mm(coords: np.ndarray, shape, voxel_mm) -> np.ndarray:
    nd = coords.shape[1]
    return coords / (np.asarray(shape[:nd], float) * np.asarray(voxel_mm[:nd], float))


def particle_columns(coords, shape, voxel_mm, pos_vox, diam_mm, *, derivatives: bool = False) -> np.ndarray:
    """Model columns ``(m, P)`` (with ``derivatives``: ``(m, P, 1 + nd + 1)``: value, d/dx_a, d/dd).

    ``pos_vox (P, >= nd)`` particle centres in voxel indices, ``diam_mm (P,)`` diameters;
    ``coords (m, nd)`` in cycles/FOV.
    """
    coords = np.atleast_2d(np.asarray(coords, float))
    nd = coords.shape[1]
    k = _k_mm(coords, shape, voxel_mm)
    kabs = np.sqrt(np.sum(k**2, axis=1))
    pos = np.asarray(pos_vox, float)[:, :nd]
    x_mm = (pos - np.asarray(shape[:nd]) // 2) * np.asarray(voxel_mm[:nd], float)
    phase = np.exp(-2j * np.pi * k @ x_mm.T)
    d = np.asarray(diam_mm, float)
    f = _form(np.pi * kabs[:, None] * d[None, :]) * phase
    if not derivatives:
        return f
    h = 1e-4 * np.maximum(d, 1e-3)
    dd = (_form(np.pi * kabs[:, None] * (d + h)) - _form(np.pi * kabs[:, None] * (d - h))) / (2 * h) * phase
    dx = [-2j * np.pi * k[:, a, None] * float(voxel_mm[a]) * f for a in range(nd)]  # per voxel of shift
    return np.stack([f, *dx, dd], axis=2)


def fit_particles(y, coords, shape, voxel_mm, pos_vox, diam_mm, *, sample_weights=None, fit=None,
                  n_iter: int = 10, max_shift_vox: float = 1.5, diam_range=(0.3, 3.0)):
    """Amplitudes, refined positions and diameters of the particles from planned samples.

    Parameters
    ----------
    y : (m,) complex array
        Lock-in samples (signal weights not divided out).
    coords : (m, nd) array
        Sample positions (cycles/FOV).
    shape, voxel_mm : grid shape and voxel size.
    pos_vox, diam_mm : initial particle centres (voxel indices) and diameters (from the optics).
    sample_weights : (m,) array, optional
        Known signal weight of every sample.
    fit : (m,) bool array, optional
        Samples used (the others are check samples).
    max_shift_vox : float
        Largest move of a centre from its optical position (larger moves are clipped: the
        data then disagree with the optics, which the consistency test reports).
    diam_range : (float, float)
        Diameters are kept within these factors of the initial ones.

    Returns
    -------
    amplitudes : (P,) complex
    pos_vox : (P, nd) refined centres
    diam_mm : (P,) refined diameters
    """
    y = np.asarray(y).ravel()
    g = np.ones(len(y)) if sample_weights is None else np.asarray(sample_weights, float).ravel()
    fit = np.ones(len(y), bool) if fit is None else np.asarray(fit, bool)
    coords = np.atleast_2d(np.asarray(coords, float))
    nd = coords.shape[1]
    pos0 = np.asarray(pos_vox, float)[:, :nd].copy()
    d0 = np.asarray(diam_mm, float).copy()
    pos, d = pos0.copy(), d0.copy()
    yf, gf, cf = y[fit], g[fit], coords[fit]
    for _ in range(n_iter):
        cols = particle_columns(cf, shape, voxel_mm, pos, d, derivatives=True) * gf[:, None, None]
        c = np.linalg.lstsq(cols.reshape(len(yf), -1), yf, rcond=None)[0].reshape(len(d), -1)
        a = c[:, 0]
        safe = np.where(np.abs(a) > 0, a, 1.0)
        step = np.real(c[:, 1:] / safe[:, None])
        step[np.abs(a) == 0] = 0.0
        pos = pos0 + np.clip(pos + np.clip(step[:, :nd], -0.5, 0.5) - pos0, -max_shift_vox, max_shift_vox)
        d = np.clip(d + np.clip(step[:, nd], -0.5 * d, 0.5 * d), diam_range[0] * d0, diam_range[1] * d0)
        if np.max(np.abs(step[:, :nd])) < 1e-3:
            break
    cols = particle_columns(cf, shape, voxel_mm, pos, d) * gf[:, None]
    amp = np.linalg.lstsq(cols, yf, rcond=None)[0]
    return amp, pos, d


def render_particles(amplitudes, shape, voxel_mm, pos_vox, diam_mm) -> np.ndarray:
    """The band-limited image of the fitted particles on the grid (what full sampling would show)."""
    from dualmode.conventions import ifft_centered

    shape = tuple(int(n) for n in shape)
    nd = 2 if len(shape) > 2 and shape[2] == 1 else len(shape)
    axes = [np.arange(n) - n // 2 for n in shape[:nd]]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, nd).astype(float)
    spec = particle_columns(grid, shape, voxel_mm, pos_vox, diam_mm) @ np.asarray(amplitudes)
    return ifft_centered(spec.reshape(shape[:nd] + (1,) * (len(shape) - nd)))
