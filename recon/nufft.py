"""Non-uniform FFT (type 2 "forward" and type 1 "adjoint") on numba kernels.

Convention (the one of :mod:`dualmode.conventions`)
---------------------------------------------------
An image ``f`` of shape ``(N_0, ..., N_{d-1})`` (d = 2 or 3) is indexed so that array index
``N // 2`` is ``x = 0``: ``x_a = i_a - N_a // 2``, i.e. ``x`` runs over ``-N/2 ... N/2 - 1``.
Non-Cartesian k-space coordinates ``coords`` have shape ``(..., d)`` in cycles per field of
view, ``k in [-N/2, N/2)`` (values outside wrap periodically), ``coords[..., a]`` pairs with
image axis ``a``. The forward operator ``A`` and its adjoint are

    (A f)_j   = sum_x f(x) exp(-2 pi i k_j . x / N)           (nufft)
    (A^H y)(x) = sum_j y_j exp(+2 pi i k_j . x / N)            (nufft_adjoint)

with ``k_j . x / N = sum_a k_{j,a} x_a / N_a``, unnormalised: on integer grid coordinates
``nufft`` equals :func:`dualmode.conventions.fft_centered` sampled at ``k_j`` (to within the
requested accuracy), and ``nufft_adjoint`` of a full Cartesian grid equals ``prod(N)`` times
``ifft_centered``. ``nufft_adjoint`` is the exact conjugate transpose of ``nufft`` (both apply
the same kernel values), so ``<A f, y> = <f, A^H y>`` to rounding.

Leading axes are batched in one call: ``image`` is ``(..., *shape)`` and k-space data are
``(..., *coords.shape[:-1])`` (repetitions, coils, ...). Single-precision input
(float32/complex64) is computed in complex64, anything else in complex128.

Algorithm: gridding with the "exponential of semicircle" kernel of FINUFFT on an upsampled grid,
described in :mod:`dualmode.recon.es_kernel`; spreading is race-free (see
:mod:`dualmode.recon.nufft_kernels`).
"""

from __future__ import annotations

import numpy as np

from .es_kernel import default_upsampling, kernel_parameters
from .nufft_plan import DEFAULT_EPS, NUFFTPlan
from .toeplitz import apply_toeplitz, toeplitz_kernel

__all__ = ["DEFAULT_EPS", "NUFFTPlan", "apply_toeplitz", "default_upsampling", "kernel_parameters", "nufft",
           "nufft_adjoint", "toeplitz_kernel"]


def nufft(image, coords, *, eps: float = DEFAULT_EPS, upsampling: float | None = None,
          threads: int | None = None) -> np.ndarray:
    """Forward non-uniform FFT (type 2): the image's spectrum at arbitrary k-space points.

    ``y_j = sum_x f(x) exp(-2 pi i k_j . x / N)``, computed to relative accuracy ``eps`` by
    gridding with the exponential-of-semicircle kernel [1]_ on an upsampled grid [2]_.

    Parameters
    ----------
    image : array_like
        Image(s), shape ``(..., *shape)``; array index ``N // 2`` is ``x = 0``; leading axes are batched.
    coords : (..., d) array_like
        k-space coordinates (cycles per FOV, ``k in [-N/2, N/2)``), d = 2 or 3; the image
        shape is taken as the last d axes of ``image`` (the last 3 if d = 2 and the last
        axis has length 1: 2D data stored as ``(N_i, N_j, 1)``).
    eps, upsampling, threads
        See :class:`NUFFTPlan`.

    Returns
    -------
    kdata : ndarray
        Complex samples, shape ``(..., *coords.shape[:-1])``; complex64 for single-precision input.

    See Also
    --------
    nufft_adjoint : the conjugate transpose.
    NUFFTPlan : the same operator with the points sorted once, for repeated use.

    References
    ----------
    .. [1] A. H. Barnett, J. Magland and L. af Klinteberg, "A parallel nonuniform fast Fourier
       transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci.
       Comput. 41(5), C479-C504 (2019) (FINUFFT: the kernel and its parameters).
    .. [2] P. J. Beatty, D. G. Nishimura and J. M. Pauly, "Rapid gridding reconstruction with
       a minimal oversampling ratio", IEEE Trans. Med. Imaging 24(6), 799-808 (2005)
       (gridding with an upsampling below 2).

    Examples
    --------
    A point at ``x = 0`` has a flat spectrum:

    >>> import numpy as np
    >>> from dualmode import nufft
    >>> image = np.zeros((16, 16))
    >>> image[8, 8] = 1.0
    >>> kdata = nufft(image, np.array([[0.0, 0.0], [3.5, -2.25]]))
    >>> bool(np.allclose(kdata, 1.0, atol=1e-2))
    True
    """
    coords = np.asarray(coords)
    image = np.asarray(image)
    d = coords.shape[-1] if coords.ndim else 0
    if image.ndim < d:
        raise ValueError(f"image with shape {image.shape} has fewer than {d} axes")
    shape = image.shape[image.ndim - d:]
    if d == 2 and image.ndim >= 3 and image.shape[-1] == 1:  # 2D data stored as (N_i, N_j, 1)
        shape = image.shape[-3:]
    plan = NUFFTPlan(coords, shape, eps=eps, upsampling=upsampling, threads=threads)
    return plan.forward(image)


def nufft_adjoint(kdata, coords, shape, *, eps: float = DEFAULT_EPS,
                  upsampling: float | None = None, threads: int | None = None) -> np.ndarray:
    """Adjoint non-uniform FFT (type 1): k-space samples gridded back to an image.

    ``f(x) = sum_j y_j exp(+2 pi i k_j . x / N)``, the exact conjugate transpose of :func:`nufft`
    (not its inverse: divide by a density compensation first for a reconstruction), by the
    same gridding as :func:`nufft` [1]_ [2]_.

    Parameters
    ----------
    kdata : array_like
        Samples, shape ``(..., *coords.shape[:-1])``; leading axes are batched.
    coords : (..., d) array_like
        k-space coordinates (cycles per FOV).
    shape : sequence of int
        Image shape (d entries, optionally followed by length-1 axes).
    eps, upsampling, threads
        See :class:`NUFFTPlan`.

    Returns
    -------
    image : ndarray
        Complex image, shape ``(..., *shape)``; complex64 for single-precision input.

    See Also
    --------
    nufft : the forward operator.

    References
    ----------
    .. [1] A. H. Barnett, J. Magland and L. af Klinteberg, "A parallel nonuniform fast Fourier
       transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci.
       Comput. 41(5), C479-C504 (2019) (FINUFFT: the kernel and its parameters).
    .. [2] P. J. Beatty, D. G. Nishimura and J. M. Pauly, "Rapid gridding reconstruction with
       a minimal oversampling ratio", IEEE Trans. Med. Imaging 24(6), 799-808 (2005)
       (gridding with an upsampling below 2).

    Examples
    --------
    One sample at ``k = 0`` spreads into a constant image:

    >>> import numpy as np
    >>> from dualmode import nufft_adjoint
    >>> image = nufft_adjoint(np.ones(1), np.zeros((1, 2)), (8, 8))
    >>> image.shape, bool(np.allclose(image, 1.0, atol=1e-2))
    ((8, 8), True)
    """
    plan = NUFFTPlan(coords, shape, eps=eps, upsampling=upsampling, threads=threads)
    return plan.adjoint(kdata)
