"""Multi-coil combination.

Root-sum-of-squares (magnitude, for display), a phase-preserving SVD combination
with one global weight vector (complex, for the sign-flip lock-in, which needs the
phase) and the adaptive combination of Walsh, Gmitro & Marcellin, MRM 43, 682
(2000), whose weights follow the local coil sensitivities. With noise covariance
``Psi`` and sensitivities ``s(x)`` the SNR-optimal combination is
``I = s^H Psi^-1 m / sqrt(s^H Psi^-1 s)`` (Roemer et al., MRM 16, 192 (1990)), with
``SNR_opt = |rho| sqrt(s^H Psi^-1 s)``; RSS approaches it where ``|rho|`` is large
and Walsh estimates ``s`` locally as the dominant eigenvector of the signal
correlation matrix of a small window.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi


def rss(images: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares over the coil axis: ``sqrt(sum_c |I_c|^2)``."""
    return np.sqrt(np.sum(np.abs(images) ** 2, axis=axis))


def svd_combine(images: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Complex coil combination with one global weight vector (first principal component).

    ``I = sum_c conj(u_c) I_c`` where ``u`` is the dominant left singular vector of the
    coil x (all other samples) matrix: optimal SNR for coil sensitivities that are
    constant over the object (small samples such as diamond particles), and the
    relative phase between repetitions is preserved. Single-coil input is returned as is.
    """
    images = np.moveaxis(np.asarray(images), coil_axis, 0)
    if images.shape[0] == 1:
        return images[0]
    flat = images.reshape(images.shape[0], -1)
    u, _, _ = np.linalg.svd(flat @ flat.conj().T)
    w = u[:, 0]
    w = w * np.exp(-1j * np.angle(w[np.argmax(np.abs(w))]))  # reference phase: strongest coil
    return np.tensordot(w.conj(), images, axes=(0, 0))


def noise_covariance(noise: np.ndarray, coil_axis: int = 0) -> np.ndarray:
    """Coil noise covariance ``Psi`` (C x C) from noise-only samples (pre-scan or signal-free k-space)."""
    n = np.moveaxis(np.asarray(noise), coil_axis, 0).reshape(np.shape(noise)[coil_axis], -1)
    n = n - n.mean(axis=1, keepdims=True)
    return (n @ n.conj().T) / max(n.shape[1] - 1, 1)


def whiten(images: np.ndarray, noise_cov: np.ndarray, coil_axis: int = 0) -> np.ndarray:
    """Prewhiten coils: ``L^-1 m`` with ``Psi = L L^H`` (Cholesky), giving unit uncorrelated noise."""
    chol = np.linalg.cholesky(np.asarray(noise_cov))
    m = np.moveaxis(np.asarray(images), coil_axis, 0)
    flat = np.linalg.solve(chol, m.reshape(m.shape[0], -1))
    return np.moveaxis(flat.reshape(m.shape), 0, coil_axis)


def walsh_sensitivities(images: np.ndarray, coil_axis: int = 0, window: int = 5,
                        noise_cov: np.ndarray | None = None, average_axis: int | None = None) -> np.ndarray:
    """Relative coil sensitivities by the adaptive method of Walsh et al. (MRM 2000).

    For every voxel the signal correlation matrix ``R = sum_window m m^H`` over a
    ``window``-wide box (:func:`scipy.ndimage.uniform_filter`) is formed; its dominant
    eigenvector (after prewhitening by ``noise_cov``) is the sensitivity estimate
    ``s`` up to a scale and phase. The phase is referenced to the coil with the
    largest total signal, so the combined image carries the object phase plus the
    smooth phase of that coil's sensitivity (no voxel-to-voxel phase jumps).

    Parameters
    ----------
    images : complex ndarray
        Coil images, coil axis ``coil_axis``, any number of spatial axes.
    window : int
        Box size (voxels) along every spatial axis of length > 1.
    noise_cov : (C, C) array, optional
        Noise covariance (identity if None).
    average_axis : int, optional
        An axis of ``images`` (e.g. repetitions) over which the correlation matrices are
        summed: one set of maps for all of them. ``m m^H`` does not see the sign of the
        signal, so sign-flipped shots share maps and their relative phase is kept.

    Returns
    -------
    ndarray
        Unit-norm (in the whitened space) sensitivities, shape of ``images`` without
        ``average_axis``.
    """
    m = np.asarray(images)
    ndim = m.ndim
    coil_axis %= ndim
    if average_axis is None:
        m, avg = m[None], 0
        kept_coil = coil_axis  # position of the coil axis in the output
        coil_axis += 1
    else:
        avg = average_axis % ndim
        kept_coil = coil_axis - (avg < coil_axis)
    m = np.moveaxis(m, (avg, coil_axis), (0, 1))  # (avg, coil, *spatial)
    if noise_cov is not None:
        m = whiten(m, noise_cov, 1)
    ncoil, spatial = m.shape[1], m.shape[2:]
    size = [1, 1] + [window if n > 1 else 1 for n in spatial]
    corr = np.einsum("ai...,aj...->ij...", m, m.conj())
    corr = ndi.uniform_filter(corr.real, size=size) + 1j * ndi.uniform_filter(corr.imag, size=size)
    corr = np.moveaxis(corr.reshape(ncoil, ncoil, -1), -1, 0)
    _, vecs = np.linalg.eigh(corr)
    s = vecs[..., -1]  # (voxels, C)
    ref = int(np.argmax(np.sum(np.abs(m) ** 2, axis=tuple(i for i in range(m.ndim) if i != 1))))
    s = s * np.exp(-1j * np.angle(s[:, ref]))[:, None]
    return np.moveaxis(s.T.reshape(ncoil, *spatial), 0, kept_coil)


def walsh_combine(images: np.ndarray, coil_axis: int = 0, window: int = 5,
                  noise_cov: np.ndarray | None = None, average_axis: int | None = None) -> np.ndarray:
    """Adaptive (Walsh) complex coil combination ``I = s^H Psi^-1/2 m`` with ``s`` from
    :func:`walsh_sensitivities` (unit norm, so the noise of ``I`` has unit variance per
    whitened coil noise variance: the SNR-optimal matched filter when ``s`` is right).

    With ``average_axis`` (e.g. the repetition axis) one set of weights serves every
    repetition, which keeps their relative phase for the sign-flip lock-in.
    """
    m = np.moveaxis(np.asarray(images), coil_axis, 0)
    if noise_cov is not None:
        m = whiten(m, noise_cov, 0)
    avg = None
    if average_axis is not None:
        avg = average_axis % np.ndim(images)
        avg = avg + 1 if avg < coil_axis % np.ndim(images) else avg
    s = walsh_sensitivities(m, 0, window, average_axis=avg)
    if avg is not None:
        s = np.expand_dims(s, avg)
    return np.sum(s.conj() * m, axis=0)
