"""Toeplitz embedding of the NUFFT normal operator ``A^H W A`` (no gridding per iteration).

For the operators of :mod:`dualmode.recon.nufft`, ``A^H W A`` is a convolution of the image with
the point-spread function ``h(z) = sum_j w_j exp(2 pi i k_j . z / N)`` over ``z in [-N, N)``:
computed once by one adjoint NUFFT on a 2N grid, then applied by zero-padded FFTs
(Fessler, Lee, Olafsson, Shi & Noll, IEEE Trans. Signal Process. 53(9), 3393 (2005)).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .nufft_plan import NUFFTPlan, resolve_threads

__all__ = ["apply_toeplitz", "toeplitz_kernel"]


def toeplitz_kernel(plan: NUFFTPlan, weights=None) -> np.ndarray:
    """Fourier transform of the point-spread function of ``A^H W A`` on the 2x grid.

    ``(A^H W A f)(x) = sum_x' h(x - x') f(x')`` with ``h(z) = sum_j w_j exp(2 pi i k_j . z / N)``,
    ``z in [-N, N)``: ``h`` is ``nufft_adjoint`` of ``w`` at coordinates ``2 k`` on a ``2N``
    image. Returns ``fftn(ifftshift(h))`` (complex128, shape ``2N``) for :func:`apply_toeplitz`.
    """
    w = np.ones(plan.points_shape) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != plan.points_shape:
        raise ValueError(f"weights shape {w.shape} != coords shape {plan.points_shape}")
    # sorted grid positions back to k (mod N, which the 2N-periodic kernel does not see)
    n = np.array(plan.oversampled_shape)
    k = (plan._u - n / 2) * (np.array(plan.grid_size) / n)
    big = tuple(2 * m for m in plan.grid_size)
    psf = NUFFTPlan(2.0 * k, big, eps=min(plan.eps, 1e-6), upsampling=2.0,
                    threads=plan.threads).adjoint(w.reshape(-1)[plan._perm].astype(np.complex128))
    axes = tuple(range(plan.ndim))
    return scipy.fft.fftn(scipy.fft.ifftshift(psf, axes=axes), axes=axes, workers=plan.threads)


def apply_toeplitz(kernel: np.ndarray, image, shape, *, threads: int | None = None) -> np.ndarray:
    """Apply ``A^H W A`` to ``image (..., *shape)`` given :func:`toeplitz_kernel`'s output.

    The kernel is the FFT of the circularly arranged ``h`` (``h(z)`` at index ``z mod 2N``), so
    the image is zero-padded at the end (index ``i`` holds pixel ``i``), multiplied in Fourier
    space and cropped to ``[0, N)``: ``y_i = sum_j h(i - j) x_j`` with ``i - j in (-N, N)``,
    the linear convolution, with no centring shifts (two whole-grid copies saved per call).
    """
    x = np.asarray(image)
    ndim = kernel.ndim
    grid = tuple(int(s) for s in shape[:ndim])
    if x.shape[x.ndim - len(shape):] != tuple(shape):
        raise ValueError(f"image shape {x.shape} does not end with {tuple(shape)}")
    batch = x.shape[:x.ndim - len(shape)]
    x = x.reshape(*batch, *grid)
    workers = resolve_threads(threads)
    axes = tuple(range(-ndim, 0))
    big = scipy.fft.fftn(x, s=kernel.shape, axes=axes, workers=workers)  # zero-padded at the end
    big *= kernel.astype(big.dtype, copy=False)
    out = scipy.fft.ifftn(big, axes=axes, workers=workers, overwrite_x=True)
    out = out[(...,) + tuple(slice(0, m) for m in grid)]
    return out.reshape(*batch, *shape)
