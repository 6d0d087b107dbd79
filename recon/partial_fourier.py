"""Partial-Fourier reconstruction: homodyne (Noll 1991) and POCS (Haacke 1991).

A real object ``m(x) >= 0`` with a slowly varying phase ``phi(x)`` has Hermitian
k-space after phase removal, so a little more than half of k-space along one axis
suffices. Acquired are ``n_acquired`` of the ``N`` samples along ``axis``: indices
``0 .. n_acquired-1`` (``side="low"``) or ``N-n_acquired .. N-1`` (``side="high"``).
The symmetric band ``|k| <= h`` (``h = n_acquired - 1 - N//2`` for ``side="low"``)
is measured on both sides and gives the low-resolution phase estimate ``phi_lr``.

Homodyne (Noll, Nishimura & Macovski, IEEE TMI 10, 154 (1991))
    Weight the zero-filled k-space by ``H(k)``: 2 on the one-sided part, a linear
    ramp with ``H(k) + H(-k) = 2`` across the symmetric band, 0 where not acquired;
    then ``m = Re(IDFT(H s) exp(-i phi_lr))``.

POCS (Haacke, Lindskog & Lin, JMR 92, 126 (1991))
    Alternate projections onto (a) images with phase ``phi_lr``: ``|I| exp(i phi_lr)``
    and (b) data consistency: measured samples replace the estimate's k-space.

Both return the complex image ``m exp(i phi_lr)`` so downstream phase-sensitive
steps (sign-flip lock-in) still see the phase.
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import fft_centered, ifft_centered

from .linop import norm
from .windows import window_1d


def _geometry(n: int, n_acquired: int, side: str):
    """Acquired mask, signed offsets ``d = index - n//2`` and symmetric half-width ``h``."""
    if side not in ("low", "high"):
        raise ValueError(f"side must be 'low' or 'high', got {side!r}")
    d = np.arange(n) - n // 2
    if side == "low":
        acquired = np.arange(n) < n_acquired
        h = n_acquired - 1 - n // 2
    else:
        acquired = np.arange(n) >= n - n_acquired
        h = n // 2 - (n - n_acquired)
    if not n // 2 < n_acquired <= n or h < 1:
        raise ValueError(f"partial Fourier needs more than half of the {n} samples, got {n_acquired}")
    return acquired, d, h


def _along(vec: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = vec.size
    return vec.reshape(shape)


def low_resolution_phase(kspace: np.ndarray, n_acquired: int, axis: int = -2, side: str = "low",
                         axes=(-3, -2, -1)) -> np.ndarray:
    """Phase of the image of the symmetric k-space band (Hann-weighted to limit ringing)."""
    axis = axis % kspace.ndim
    n = kspace.shape[axis]
    _, d, h = _geometry(n, n_acquired, side)
    band = np.zeros(n)
    inside = np.abs(d) <= h
    band[inside] = window_1d(2 * h + 1, "hann") if h > 0 else 1.0
    band[inside] = np.maximum(band[inside], 1e-3)
    return np.angle(ifft_centered(kspace * _along(band, kspace.ndim, axis), axes=axes))


def homodyne(kspace: np.ndarray, n_acquired: int, axis: int = -2, side: str = "low",
             axes=(-3, -2, -1)) -> np.ndarray:
    """Homodyne partial-Fourier reconstruction (see module docstring).

    Parameters
    ----------
    kspace : ndarray
        Centred k-space with the non-acquired samples along ``axis`` (set to zero or anything:
        they are ignored).
    n_acquired : int
        Number of acquired samples along ``axis`` (more than half).
    axis : int
        The partial-Fourier axis (one of ``axes``).
    side : {"low", "high"}
        Which end of the axis was acquired.
    axes : sequence of int
        All encoding axes.

    Returns
    -------
    ndarray, complex
        ``m exp(i phi_lr)`` with ``m`` real (may be slightly negative where noise dominates).
    """
    axis = axis % kspace.ndim
    n = kspace.shape[axis]
    acquired, d, h = _geometry(n, n_acquired, side)
    sgn = 1.0 if side == "low" else -1.0  # low side: the one-sided part is d < -h
    weight = np.where(acquired, 2.0, 0.0)
    band = np.abs(d) <= h
    weight[band] = 1.0 - sgn * d[band] / (h + 1.0)
    phase = low_resolution_phase(kspace, n_acquired, axis, side, axes)
    image = ifft_centered(kspace * _along(weight, kspace.ndim, axis), axes=axes)
    magnitude = (image * np.exp(-1j * phase)).real
    return magnitude * np.exp(1j * phase)


def pocs(kspace: np.ndarray, n_acquired: int, axis: int = -2, side: str = "low", axes=(-3, -2, -1),
         max_iter: int = 20, tol: float = 1e-4) -> np.ndarray:
    """POCS partial-Fourier reconstruction (see module docstring).

    Parameters are as in :func:`homodyne`, plus ``max_iter`` and ``tol`` (stop when the
    relative change of the k-space estimate falls below ``tol``).
    """
    axis = axis % kspace.ndim
    n = kspace.shape[axis]
    acquired, _, _ = _geometry(n, n_acquired, side)
    mask = _along(acquired, kspace.ndim, axis)
    measured = np.where(mask, kspace, 0)
    phase = np.exp(1j * low_resolution_phase(kspace, n_acquired, axis, side, axes))
    estimate = measured
    for _ in range(max_iter):
        image = ifft_centered(estimate, axes=axes)
        image = np.abs(image) * phase  # could also allow m < 0: Re(I e^{-i phi}) e^{i phi}
        new = np.where(mask, measured, fft_centered(image, axes=axes))
        change = norm(new - estimate) / max(norm(new), 1e-30)
        estimate = new
        if change < tol:
            break
    return ifft_centered(estimate, axes=axes)


def zero_filled(kspace: np.ndarray, n_acquired: int, axis: int = -2, side: str = "low",
                axes=(-3, -2, -1)) -> np.ndarray:
    """Reference: inverse FFT of the partial k-space with the missing samples set to zero."""
    axis = axis % kspace.ndim
    acquired, _, _ = _geometry(kspace.shape[axis], n_acquired, side)
    return ifft_centered(np.where(_along(acquired, kspace.ndim, axis), kspace, 0), axes=axes)
