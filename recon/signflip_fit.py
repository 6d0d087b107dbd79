"""Estimation kernels of the sign-flip lock-in (steps 1-4 of :mod:`dualmode.recon.signflip`).

The rank-one direction of the projected shots on high-signal voxels (Huber re-weighted)
and one whitened least-squares pass; chunked over voxels to bound memory.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from .blas import single_thread_blas

# chi-square quantiles through scipy.special, as scipy.stats.chi2 computes them
# (ppf = 2 gammaincinv(k/2, q), isf = 2 gammainccinv(k/2, a)): scipy.stats costs ~0.4 s to import


def _chi2_scale(energy: np.ndarray, dof: int) -> float:
    """Per-component sigma^2 from per-voxel energies ``~ sigma^2 chi2(2 dof)`` (median)."""
    return float(np.median(energy) / (2 * scipy.special.gammaincinv(dof, 0.5)))


_CHUNK = 1 << 18  # voxels per block: bounds the float64 temporaries for large volumes


def _chunks(n_vox: int):
    for start in range(0, n_vox, _CHUNK):
        yield slice(start, min(start + _CHUNK, n_vox))


def _whitened(block: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``block * d[:, None]`` in complex128 (a fresh array; no product when ``d`` is all ones)."""
    out = block.astype(np.complex128)
    if np.any(d != 1.0):
        out *= d[:, None]
    return out


def _pair_sums(x: np.ndarray) -> np.ndarray:
    """``x[..., 0::2] + x[..., 1::2]``: squared real and imaginary parts summed into ``|z|^2``."""
    return x[..., 0::2] + x[..., 1::2]


def _column_energy(x: np.ndarray) -> np.ndarray:
    """``sum_k x[k] ** 2`` over the rows (a few) without a squared copy of ``x``."""
    return np.einsum("kv,kv->v", x, x)


def _rank_one_direction(m, s, d, q, mask, robust: bool, n_iter: int, huber_k: float,
                        alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Dominant left singular vector of the projected whitened data on high-signal voxels.

    ``m (n, V)`` shots, ``s`` signs, ``d`` whitening, ``q`` orthonormal drift basis
    (whitened).
    Returns ``u`` and the boolean voxel selection.
    """
    n, n_vox = m.shape
    dof_p = n - q.shape[1]
    qt = np.ascontiguousarray(q.T)  # a transposed view sends matmul to its slow non-BLAS loop (15x)

    def project(block):
        yw = block.astype(np.complex128) * d[:, None]
        return yw - q @ (qt @ yw)

    energy = np.empty(n_vox)
    for sl in _chunks(n_vox):  # |P y|^2 = |y|^2 - |Q^T y|^2 (Q orthonormal): no projected copy
        yw = _whitened(m[:, sl], d).view(np.float64)  # real, imaginary interleaved: Q^T is real
        energy[sl] = _pair_sums(np.einsum("kv,kv->v", yw, yw)) - _pair_sums(_column_energy(qt @ yw))
    sigma2 = _chi2_scale(energy, dof_p)
    if mask is None:
        keep = energy > sigma2 * 2 * scipy.special.gammainccinv(dof_p, alpha)
        if keep.sum() < 8:  # no clear signal: strongest voxels, else all
            keep = energy >= np.sort(energy)[-min(n_vox, max(8, n_vox // 100))]
    else:
        keep = np.ravel(np.asarray(mask, dtype=bool))
        if keep.size != n_vox or not keep.any():
            raise ValueError("mask must have the image shape and select at least one voxel")
    ym = project(m[:, keep])
    u = project(s[:, None].astype(complex))[:, 0]  # prior: c_k = 1
    u /= np.linalg.norm(u)
    dof_r = dof_p - 1
    if not (robust and dof_r >= 1):
        return np.linalg.eigh(ym @ ym.conj().T)[1][:, -1], keep
    for _ in range(n_iter):
        # Huber weights on the rank-one residual, starting from the scheme prior, so that
        # voxels that do not follow one polarization pattern (flow, motion) lose influence
        resid = np.sum(np.abs(ym - np.outer(u, u.conj() @ ym)) ** 2, axis=0)
        rho = np.sqrt(resid / (sigma2 * 2 * dof_r))
        w = np.minimum(1.0, huber_k / np.maximum(rho, 1e-12))
        u = np.linalg.eigh((ym * w) @ ym.conj().T)[1][:, -1]
    return u, keep


def per_shot_sigma(fit: dict) -> np.ndarray:
    """Noise sigma of each shot from the residuals of a :func:`_fit` (median, hat-corrected);
    computed when asked: the fits of a rejected drift order never need it."""
    hat, d = fit["hat"], fit["d"]
    per_shot = np.sqrt(np.median(fit["resid_shot"], axis=1) / (2 * np.log(2) * np.maximum(1 - hat, 1e-12)))
    return per_shot / d


@single_thread_blas  # products with a few shots as inner dimension: threaded BLAS was 2-4x slower under load
def _fit(m, s, basis, d, mask, robust, n_iter, huber_k, alpha) -> dict:
    """One whitened pass of steps 1-4 (see module docstring); ``d = 1 / sigma_k``."""
    n, n_vox = m.shape
    q, _ = np.linalg.qr(basis * d[:, None])
    u, keep = _rank_one_direction(m, s, d, q, mask, robust, n_iter, huber_k, alpha)
    y_s = s * d - q @ (q.T @ (s * d))  # whitened, projected sign vector
    # g = alpha u / d + T beta with c = s g closest to 1
    design = np.concatenate([(s * u / d)[:, None], (s[:, None] * basis).astype(complex)], axis=1)
    params, *_ = np.linalg.lstsq(design, np.ones(n, complex), rcond=None)
    g = params[0] * u / d + basis @ params[1:]
    x = np.concatenate([g[:, None], basis.astype(complex)], axis=1) * d[:, None]
    pinv = np.linalg.pinv(x)
    hat = np.real(np.diag(x @ pinv))
    coef = np.empty((x.shape[1], n_vox), np.complex64)
    resid_energy = np.empty(n_vox)
    resid_shot = np.empty((n, n_vox), np.float32)
    for sl in _chunks(n_vox):
        mw = _whitened(m[:, sl], d)
        c = pinv @ mw
        mw -= x @ c  # the residual
        coef[:, sl] = c
        flat = mw.view(np.float64)
        resid_shot[:, sl] = r = _pair_sums(flat * flat)
        resid_energy[sl] = r.sum(axis=0)
    return {
        "g": g,
        "coef": coef,
        "cov": np.real(np.linalg.inv(x.conj().T @ x)),
        "weights": pinv * d[None, :],
        "resid_energy": resid_energy,
        "resid_shot": resid_shot,
        "hat": hat,
        "d": d,
        "mask": keep,
        "sign_alignment": float(abs(np.vdot(u, y_s)) / max(np.linalg.norm(y_s), 1e-30)),
    }
