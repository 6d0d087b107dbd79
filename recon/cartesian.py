"""Cartesian reconstruction: centred inverse FFT, zero-filling, per-repetition images.

Centring convention (:func:`dualmode.conventions.fft_centered`)
    ``fft_centered(x) = fftshift(fftn(ifftshift(x)))``: the unnormalised DFT
    ``y[k] = sum_x f[x] exp(-2 pi i k.x / N)`` with ``k`` and ``x`` both in
    ``-N/2 .. N/2-1`` and array index ``N // 2`` holding ``k = 0`` / ``x = 0``
    (odd ``N`` too). ``ifft_centered`` is its exact inverse (factor ``1/N``).
    tests/test_cartesian.py checks both against :mod:`numpy.fft` and the explicit sum.

Zero-filling
    Padding k-space symmetrically about index ``N // 2`` to ``M > N`` samples keeps the
    k-space step ``1/FOV``: the FOV is unchanged, the voxel becomes ``FOV / M`` and the
    DFT origin (index ``M // 2``) stays at ``position_mm``; the new affine is
    :func:`zero_fill_affine`. It is sinc interpolation, not extra resolution.

Uses scipy.fft through the conventions module (already optimal for Cartesian data;
numba is reserved for gridding in :mod:`dualmode.recon.nufft`).
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import ifft_centered, mri_affine
from dualmode.kspace import KSpace

from .coils import rss, svd_combine, walsh_combine
from .hyperpolarized import correct_rf_depletion, depletion_applies


def reconstruct_repetitions(ksp: KSpace, *, rf_correction: bool = True, t1_s: float = np.inf,
                            workers: int = -1, noise_to_signal: float = 0.0, coil_combine: str = "svd",
                            walsh_window: int = 5, hyperpolarized: bool = True) -> np.ndarray:
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
    noise_to_signal : float
        0: divide by the weighting; > 0: Wiener-regularised correction
        (see :func:`dualmode.recon.hyperpolarized.correct_rf_depletion`).
    coil_combine : {"svd", "walsh", "rss"}
        One global weight vector (small objects, :func:`~dualmode.recon.coils.svd_combine`)
        or spatially adaptive Walsh weights shared by all repetitions
        (:func:`~dualmode.recon.coils.walsh_combine` with ``average_axis=0``, box
        ``walsh_window``) for objects larger than the coils' sensitivity variations;
        ``"rss"``: root sum of squares (magnitude only, no phase: not for the lock-in).
    hyperpolarized : bool
        ``False`` for thermal-equilibrium data: no RF-depletion model
        (:func:`~dualmode.recon.hyperpolarized.depletion_applies`; a hyperpolarized flip
        angle >= 90 deg raises ``ValueError``).

    Returns
    -------
    images : ndarray, complex64, shape (rep, i, j, k)
    """
    if ksp.header.trajectory != "cartesian":
        raise ValueError("reconstruct_repetitions needs Cartesian k-space; use the NUFFT for others")
    data = ksp.data
    h = ksp.header
    if rf_correction and depletion_applies(h.flip_angle_deg, hyperpolarized) and h.line_order is not None:
        data = correct_rf_depletion(data, h.line_order, h.flip_angle_deg, h.tr_ms or 0.0, t1_s,
                                    noise_to_signal=noise_to_signal)
    images = ifft_centered(data, axes=(-3, -2, -1), workers=workers)
    if coil_combine == "rss":
        return rss(images, axis=1).astype(np.complex64)
    if coil_combine == "walsh" and images.shape[1] > 1:
        return walsh_combine(images, coil_axis=1, window=walsh_window, average_axis=0).astype(np.complex64)
    if coil_combine not in ("svd", "walsh"):
        raise ValueError(f"coil_combine must be 'svd', 'walsh' or 'rss', got {coil_combine!r}")
    return svd_combine(images, coil_axis=1).astype(np.complex64)


def reconstruct(ksp: KSpace, *, workers: int = -1) -> np.ndarray:
    """Magnitude image of a Cartesian acquisition: average over repetitions, RSS over coils.

    Returns
    -------
    image : ndarray, float32, shape (i, j, k)
    """
    images = ifft_centered(ksp.data, axes=(-3, -2, -1), workers=workers)
    return rss(images.mean(axis=0), axis=0).astype(np.float32)


def zero_fill(kspace: np.ndarray, shape, axes=(-3, -2, -1)) -> np.ndarray:
    """Pad centred k-space with zeros to ``shape`` along ``axes``, keeping ``k = 0`` at ``M // 2``.

    Parameters
    ----------
    kspace : ndarray
        Centred k-space (index ``N // 2`` is ``k = 0``).
    shape : sequence of int
        Target size along each of ``axes`` (``>=`` the current size).
    axes : sequence of int
        The encoding axes.

    Returns
    -------
    ndarray
        Zero-filled k-space, scaled by ``M / N`` per axis so that
        :func:`dualmode.conventions.ifft_centered` keeps image intensities.
    """
    axes = [a % kspace.ndim for a in axes]
    shape = [int(m) for m in shape]
    if len(shape) != len(axes):
        raise ValueError(f"need one target size per axis, got {shape} for axes {axes}")
    pad = [(0, 0)] * kspace.ndim
    scale = 1.0
    for ax, m in zip(axes, shape):
        n = kspace.shape[ax]
        if m < n:
            raise ValueError(f"zero-fill target {m} is smaller than the acquired {n} on axis {ax}")
        before = m // 2 - n // 2
        pad[ax] = (before, m - n - before)
        scale *= m / n
    return np.pad(kspace, pad) * scale


def zero_fill_affine(new_matrix, fov_mm, position_mm=(0.0, 0.0, 0.0), orientation=None) -> np.ndarray:
    """Voxel -> RAS affine after zero-filling to ``new_matrix`` (same FOV, same DFT origin).

    Zero-filling changes only the voxel size (``fov_mm / new_matrix``); the voxel at
    ``new_matrix // 2`` is still at ``position_mm``. This is
    :func:`dualmode.conventions.mri_affine` of the new matrix with the acquisition's
    ``fov_mm``, ``position_mm`` and ``orientation``.
    """
    return mri_affine(new_matrix, fov_mm, position_mm, orientation)


def reconstruct_image(kspace: np.ndarray, *, window: str | None = None, zero_fill_to=None,
                      axes=(-3, -2, -1), workers: int = -1, **window_params) -> np.ndarray:
    """Complex image of centred Cartesian k-space with optional apodisation and zero-filling.

    Parameters
    ----------
    kspace : ndarray
        Centred k-space, encoding axes ``axes``.
    window : {None, "hann", "tukey", "gaussian"}
        Apodisation (see :mod:`dualmode.recon.windows` for the resolution/SNR cost).
    zero_fill_to : sequence of int, optional
        Target matrix along ``axes`` (pair the result with :func:`zero_fill_affine`).
    axes : tuple of int
        Encoding axes (the others are batched).
    workers : int
        Threads of :mod:`scipy.fft` (-1: all cores).
    **window_params
        Passed to :func:`dualmode.recon.windows.apodize` (e.g. ``alpha`` of the Tukey window).

    Returns
    -------
    ndarray
        Complex image, array index ``N // 2`` at ``x = 0`` (:func:`dualmode.conventions.ifft_centered`).

    Examples
    --------
    >>> import numpy as np
    >>> from dualmode.conventions import fft_centered
    >>> image = np.zeros((8, 8, 1))
    >>> image[4, 4, 0] = 1.0
    >>> bool(np.allclose(reconstruct_image(fft_centered(image)), image))
    True
    >>> reconstruct_image(fft_centered(image), zero_fill_to=(16, 16, 1)).shape
    (16, 16, 1)
    """
    from .windows import apodize

    data = kspace if window is None else apodize(kspace, window, axes, **window_params)
    if zero_fill_to is not None:
        data = zero_fill(data, zero_fill_to, axes)
    return ifft_centered(data, axes=axes, workers=workers)
