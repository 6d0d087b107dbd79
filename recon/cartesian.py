"""Cartesian reconstruction of every repetition, with the hyperpolarized line-weight correction.

Uses :func:`dualmode.conventions.ifft_centered` (scipy.fft is already optimal for
Cartesian data; numba is reserved for gridding in :mod:`dualmode.recon.nufft`).
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import ifft_centered
from dualmode.io.kspace import KSpace

from .coils import rss, svd_combine
from .hyperpolarized import correct_rf_depletion


def reconstruct_repetitions(ksp: KSpace, *, rf_correction: bool = True, t1_s: float = np.inf,
                            workers: int = -1) -> np.ndarray:
    """Complex image of every repetition, coils combined with phase kept.

    Parameters
    ----------
    ksp : KSpace
        Cartesian k-space ``(rep, coil, k_i, k_j, k_k)``.
    rf_correction : bool
        Divide out the RF-depletion weighting of the line order when the header gives
        ``flip_angle_deg`` and ``line_order``.
    t1_s : float
        T1 used for the within-shot decay (inf: none).

    Returns
    -------
    images : ndarray, complex64, shape (rep, i, j, k)
    """
    if ksp.header.trajectory != "cartesian":
        raise ValueError("reconstruct_repetitions needs Cartesian k-space; use the NUFFT for others")
    data = ksp.data
    h = ksp.header
    if rf_correction and h.flip_angle_deg and h.line_order is not None:
        data = correct_rf_depletion(data, h.line_order, h.flip_angle_deg, h.tr_ms or 0.0, t1_s)
    images = ifft_centered(data, axes=(-3, -2, -1), workers=workers)
    return svd_combine(images, coil_axis=1).astype(np.complex64)


def reconstruct(ksp: KSpace, *, workers: int = -1) -> np.ndarray:
    """Magnitude image of a Cartesian acquisition: average over repetitions, RSS over coils.

    Returns
    -------
    image : ndarray, float32, shape (i, j, k)
    """
    images = ifft_centered(ksp.data, axes=(-3, -2, -1), workers=workers)
    return rss(images.mean(axis=0), axis=0).astype(np.float32)
