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

Algorithm
---------
Gridding with the "exponential of semicircle" kernel
``phi(z) = exp(beta (sqrt(1 - (2 z / w)^2) - 1))``, ``|z| <= w/2``, on a grid upsampled by
``sigma`` (``n = sigma N``), evaluated by a piecewise polynomial (FINUFFT: Barnett, Magland &
af Klinteberg, SIAM J. Sci. Comput. 41, C479, 2019). Forward: divide by the kernel's Fourier
transform ``Phi(x / n)`` (deapodisation), zero-pad to ``n``, FFT (:mod:`scipy.fft` with
``workers``), interpolate ``y_j = sum_m F_m phi(u_j - m)`` at ``u_j = k_j n / N + n / 2``
(the oversampled grid is centred, k = 0 at index ``n/2``, by a ``(-1)^x`` factor folded into
the deapodisation; ``n`` is even). Adjoint: spread, inverse FFT without ``1/n``, crop,
deapodise. Width ``w`` and ``beta`` follow FINUFFT's
rules for the requested relative accuracy ``eps``. Spreading is race-free (see
:mod:`dualmode.recon.nufft_kernels`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from contextlib import contextmanager

import numba
import numpy as np
import scipy.fft


from . import nufft_kernels as _k

__all__ = ["NUFFTPlan", "default_upsampling", "kernel_parameters", "nufft", "nufft_adjoint",
           "toeplitz_kernel"]

DEFAULT_EPS = 1e-3

#: Tile size (grid points) along axes 1.. for sorting points within a slab (cache locality).
_TILE = {2: 16, 3: 8}


def kernel_parameters(eps: float, upsampling: float) -> tuple[int, float]:
    """Width ``w`` (grid points) and shape ``beta`` of the ES kernel for accuracy ``eps``.

    The aliasing error of the ES kernel decays like ``exp(-pi w sqrt(1 - 1/sigma))``
    (Barnett et al. 2019, eq. 4.6); we take the smallest ``w`` with
    ``4 exp(-pi w sqrt(1 - 1/sigma)) <= eps`` and ``beta = 0.95 pi (1 - 1/(2 sigma)) w``
    (the constants 4 and 0.95 were fitted on random points against FINUFFT at 1e-12;
    relative l2 errors at ``eps = 1e-3`` are 0.4e-3 to 1.1e-3 for sigma in [1.25, 2]).
    """
    if not (0 < eps < 1):
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    if not (1.2 <= upsampling <= 4):
        raise ValueError(f"upsampling must be in [1.2, 4], got {upsampling!r}")
    decay = math.pi * math.sqrt(1.0 - 1.0 / upsampling)
    width = min(max(math.ceil(math.log(4.0 / eps) / decay), 2), 16)
    beta = 0.95 * math.pi * (1.0 - 0.5 / upsampling) * width
    return width, beta


def default_upsampling(ndim: int, eps: float) -> float:
    """Grid upsampling ``sigma`` used when none is given: 2 in 2D; in 3D the smallest of
    1.25 and 1.5 whose kernel stays at most 6 and 8 points wide, else 2.

    In 3D the grid, not the arithmetic, bounds the speed while the kernel is narrow: on the
    2 M-point radial benchmark at ``eps = 1e-3`` sigma 1.25 (160^3 grid for 128^3, width 6)
    was 1.2 times faster than 1.5 (192^3, width 5) and 2 (256^3, width 4). Wider kernels
    cost more than the grid saves (64^3, 256 k points: at 1e-4 sigma 1.5 took 47 ms, 1.25
    (width 8) 104 ms; at 1e-6 sigma 2 took 75 ms, 1.5 (width 9) 112 ms). In 2D the grid fits
    in cache and sigma 2 (width 4 at 1e-3) is fastest.
    """
    if ndim == 2:
        return 2.0
    for sigma, max_width in ((1.25, 6), (1.5, 8)):
        if kernel_parameters(eps, sigma)[0] <= max_width:
            return sigma
    return 2.0


def _es(z: np.ndarray, width: int, beta: float) -> np.ndarray:
    arg = 1.0 - (2.0 * np.asarray(z, dtype=float) / width) ** 2
    return np.where(arg >= 0, np.exp(beta * (np.sqrt(np.clip(arg, 0, None)) - 1.0)), 0.0)


@functools.lru_cache(maxsize=64)
def _kernel_polynomial(width: int, beta: float, eps: float) -> np.ndarray:
    """Horner coefficients ``c[k, i]`` (highest power first) of ``phi(i0 + i - u)`` in ``s``."""
    s = np.cos(np.linspace(0, np.pi, 400))  # Chebyshev-like sampling of [-1, 1]
    target = min(eps / 20.0, 1e-3)
    for deg in range(width + 1, width + 14):
        coef = np.empty((deg + 1, width))
        err = 0.0
        for i in range(width):
            f = _es((s + 1) / 2 - width / 2 + i, width, beta)
            cheb = np.polynomial.Chebyshev.fit(s, f, deg, domain=[-1, 1])
            power = cheb.convert(kind=np.polynomial.Polynomial, domain=[-1, 1]).coef
            coef[:, i] = power[::-1]
            err = max(err, np.abs(np.polynomial.polynomial.polyval(s, power) - f).max())
        if err < target:
            break
    return coef


@functools.lru_cache(maxsize=8)
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


def _kernel_ft(xi: np.ndarray, width: int, beta: float) -> np.ndarray:
    """``Phi(xi) = int phi(z) cos(2 pi z xi) dz`` by Gauss-Legendre quadrature."""
    nodes, weights = _gauss_legendre(2 * width + 60)
    z = 0.25 * width * (nodes + 1)  # [0, w/2]
    vals = _es(z, width, beta) * (0.25 * width * weights)
    return 2.0 * np.cos(2 * np.pi * np.outer(xi, z)) @ vals


@contextmanager
def _numba_threads(threads: int):
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _resolve_threads(threads: int | None) -> int:
    if threads is None:
        return numba.get_num_threads()
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return min(int(threads), numba.config.NUMBA_NUM_THREADS)


def _complex_dtype(dtype) -> np.dtype:
    return np.result_type(dtype, np.complex64)


class NUFFTPlan:
    """Forward/adjoint NUFFT for fixed ``coords`` and image ``shape`` (points sorted once).

    Parameters
    ----------
    coords : (..., d) array_like
        k-space coordinates in cycles per FOV, ``k in [-N/2, N/2)``, d = 2 or 3.
    shape : sequence of int
        Image shape ``(N_0, ..., N_{d-1})``; trailing length-1 axes (2D data stored as
        ``(N_0, N_1, 1)``) are allowed and ignored.
    eps : float
        Requested relative accuracy (the default 1e-3 gives a relative l2 error of about 1e-3).
    upsampling : float, optional
        Grid upsampling ``sigma``; default :func:`default_upsampling`.
    threads : int, optional
        Threads for spreading and FFT; default: numba's current setting.

    Notes
    -----
    ``plan.forward(f)`` is :func:`nufft`, ``plan.adjoint(y)`` :func:`nufft_adjoint`,
    ``plan.normal(f)`` applies ``A^H W A`` by Toeplitz embedding (:func:`toeplitz_kernel`).
    """

    def __init__(self, coords, shape, *, eps: float = DEFAULT_EPS,
                 upsampling: float | None = None, threads: int | None = None):
        coords = np.asarray(coords)
        if coords.ndim < 1 or coords.shape[-1] not in (2, 3):
            raise ValueError(f"coords must have shape (..., 2) or (..., 3), got "
                             f"{coords.shape}")
        if not np.issubdtype(coords.dtype, np.number) or np.iscomplexobj(coords):
            raise ValueError(f"coords must be real numbers, got {coords.dtype}")
        ndim = coords.shape[-1]
        shape = tuple(int(s) for s in np.atleast_1d(shape))
        if len(shape) < ndim or any(s != 1 for s in shape[ndim:]) or min(shape[:ndim]) < 1:
            raise ValueError(f"image shape {shape} does not fit {ndim}D coords")
        pts = np.ascontiguousarray(coords.reshape(-1, ndim), dtype=np.float64)
        self.shape = shape
        self.ndim = ndim
        self.grid_size = shape[:ndim]
        self.points_shape = coords.shape[:-1]
        self.eps = float(eps)
        self.upsampling = float(upsampling if upsampling is not None else
                                default_upsampling(ndim, self.eps))
        self.threads = _resolve_threads(threads)
        self.width, self.beta = kernel_parameters(self.eps, self.upsampling)
        w = self.width
        big = np.array([max(scipy.fft.next_fast_len(math.ceil(self.upsampling * m)), 2 * w)
                        for m in self.grid_size])
        big += big % 2
        self.oversampled_shape = tuple(int(m) for m in big)
        coef = _kernel_polynomial(w, self.beta, self.eps)
        self._coef = {np.float64: coef, np.float32: coef.astype(np.float32)}
        self._kern = _k.kernels(w, coef.shape[0] - 1)

        # deapodisation factors and padded positions per axis
        self._corr, self._idx = [], []
        for m, nn in zip(self.grid_size, self.oversampled_shape):
            x = np.arange(m) - m // 2
            # (-1)^x: the oversampled grid is centred (k = 0 at index n/2, n even)
            self._corr.append(np.where(x % 2, -1.0, 1.0) / _kernel_ft(x / nn, w, self.beta))
            self._idx.append((x % nn).astype(np.int64))
        self._corr32 = [c.astype(np.float32) for c in self._corr]

        # grid positions u = k n / N + n / 2 (mod n), sorted into slabs x tiles
        nslab = big[0] // w
        nslab -= nslab % 2
        self._nslab = int(max(nslab, 1))
        tile = np.array([1] + [_TILE[ndim]] * (ndim - 1), np.int64)
        scale = big / np.array(self.grid_size, dtype=float)
        m = pts.shape[0]
        self._perm = np.empty(m, np.int64)
        self._u = np.empty((m, ndim), np.float64)
        with _numba_threads(self.threads):
            self._slab_ptr = _k.sort_points(
                pts, scale, big / 2.0, big.astype(np.int64), self._nslab, tile,
                max(1, min(self.threads, m // 4096)), np.empty(m, np.int32),
                np.empty((m, ndim), np.float64), self._perm, self._u)
        if self._slab_ptr.shape[0] == 0:
            raise ValueError("coords contain NaN or infinite values")
        self._groups = {}
        self.toeplitz = None

    @property
    def n_points(self) -> int:
        return int(self._perm.shape[0])

    # -- helpers -------------------------------------------------------------
    def _slab_groups(self, threads: int):
        """Per parity, slab-list boundaries splitting the points evenly over threads."""
        if threads not in self._groups:
            counts = np.diff(self._slab_ptr)
            out = []
            if self._nslab < 2:
                out = [np.array([0, 1], np.int64), np.array([0, 0], np.int64)]
            else:
                for color in (0, 1):
                    c = np.cumsum(counts[color::2])
                    cut = np.searchsorted(c, c[-1] * np.arange(1, threads) / threads, "left")
                    out.append(np.concatenate([[0], cut + 1, [len(c)]]).clip(0, len(c))
                               .astype(np.int64))
                    out[-1] = np.maximum.accumulate(out[-1])
            self._groups[threads] = out
        return self._groups[threads]

    def _batch(self, arr, tail, name):
        arr = np.asarray(arr)
        k = len(tail)
        if arr.shape[arr.ndim - k:] != tail or arr.ndim < k:
            raise ValueError(f"{name} has shape {arr.shape}, expected (..., "
                             f"{', '.join(map(str, tail))})")
        batch = arr.shape[:arr.ndim - k]
        cdt = _complex_dtype(arr.dtype)
        return batch, cdt, np.ascontiguousarray(arr, dtype=cdt)

    def _fft_axes(self):
        return tuple(range(1, self.ndim + 1))

    def _spread(self, grid, values, rdt):
        """Spread ``values`` (B, M) onto the zeroed complex ``grid`` (B, *n) in place."""
        spread = self._kern[f"spread{self.ndim}d"]
        shape = np.array(grid.shape, np.int64)
        ordered = np.empty_like(values)
        _k.gather(values, self._perm, ordered)
        for color, groups in enumerate(self._slab_groups(self.threads)):
            spread(grid.view(rdt).reshape(-1), shape, ordered, self._u,
                   self._coef[rdt], self._slab_ptr, groups, color, 2 * self.width)

    def _interp(self, grid, rdt):
        """Interpolate the complex ``grid`` (B, *n) at the points: (B, M)."""
        ordered = np.empty((grid.shape[0], self.n_points), grid.dtype)
        chunk = max(1, -(-self.n_points // (8 * self.threads)))
        self._kern[f"interp{self.ndim}d"](grid.view(rdt).reshape(-1),
                                          np.array(grid.shape, np.int64), ordered, self._u,
                                          self._coef[rdt], chunk, 2 * self.width)
        out = np.empty_like(ordered)
        _k.scatter(ordered, self._perm, out)
        return out

    # -- operators -------------------------------------------------------------
    def forward(self, image) -> np.ndarray:
        """``y_j = sum_x f(x) exp(-2 pi i k_j . x / N)`` for image ``(..., *shape)``."""
        batch, cdt, x = self._batch(image, self.shape, "image")
        nb_ = int(np.prod(batch, dtype=np.int64))
        x = x.reshape(nb_, *self.grid_size)
        rdt = np.float32 if cdt == np.complex64 else np.float64
        corr = self._corr32 if rdt == np.float32 else self._corr
        with _numba_threads(self.threads):
            grid = np.zeros((nb_, *self.oversampled_shape), cdt)
            if self.ndim == 2:
                _k.pad2d(x, grid, *self._idx, *corr)
            else:
                _k.pad3d(x, grid, *self._idx, *corr)
            grid = scipy.fft.fftn(grid, axes=self._fft_axes(), workers=self.threads,
                                  overwrite_x=True)
            out = self._interp(grid, rdt)
        return out.reshape(*batch, *self.points_shape)

    def adjoint(self, kdata) -> np.ndarray:
        """``f(x) = sum_j y_j exp(+2 pi i k_j . x / N)`` for data ``(..., *coords.shape[:-1])``."""
        batch, cdt, y = self._batch(kdata, self.points_shape, "kdata")
        nb_ = int(np.prod(batch, dtype=np.int64))
        y = y.reshape(nb_, self.n_points)
        rdt = np.float32 if cdt == np.complex64 else np.float64
        corr = self._corr32 if rdt == np.float32 else self._corr
        with _numba_threads(self.threads):
            grid = np.zeros((nb_, *self.oversampled_shape), cdt)
            self._spread(grid, y, rdt)
            grid = scipy.fft.ifftn(grid, axes=self._fft_axes(), workers=self.threads,
                                   overwrite_x=True, norm="forward")
            img = np.empty((nb_, *self.grid_size), cdt)
            if self.ndim == 2:
                _k.crop2d(grid, img, *self._idx, *corr)
            else:
                _k.crop3d(grid, img, *self._idx, *corr)
        return img.reshape(*batch, *self.shape)

    def spread_interp(self, values) -> np.ndarray:
        """``sum_i v_i sum_m phi(u_i - m) phi(u_j - m)`` (grid convolution, no FFT; for DCF)."""
        batch, cdt, y = self._batch(values, self.points_shape, "values")
        nb_ = int(np.prod(batch, dtype=np.int64))
        y = y.reshape(nb_, self.n_points)
        rdt = np.float32 if cdt == np.complex64 else np.float64
        with _numba_threads(self.threads):
            grid = np.zeros((nb_, *self.oversampled_shape), cdt)
            self._spread(grid, y, rdt)
            out = self._interp(grid, rdt)
        return out.reshape(*batch, *self.points_shape)

    def kernel_integral(self) -> float:
        """``int phi(z) dz`` of the 1D kernel (grid units)."""
        return float(_kernel_ft(np.zeros(1), self.width, self.beta)[0])

    def normal(self, image, weights=None) -> np.ndarray:
        """``A^H W A f`` by Toeplitz embedding (kernel computed once and cached per ``weights``).

        ``weights`` (shape ``coords.shape[:-1]``, default ones) is the diagonal ``W``.
        """
        key = None if weights is None else hashlib.blake2b(
            np.ascontiguousarray(weights, dtype=float).tobytes(), digest_size=16).digest()
        if self.toeplitz is None or self.toeplitz[0] != key:
            self.toeplitz = (key, toeplitz_kernel(self, weights))
        return apply_toeplitz(self.toeplitz[1], image, self.shape, threads=self.threads)


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
    """Apply ``A^H W A`` to ``image (..., *shape)`` given :func:`toeplitz_kernel`'s output."""
    x = np.asarray(image)
    ndim = kernel.ndim
    grid = tuple(int(s) for s in shape[:ndim])
    if x.shape[x.ndim - len(shape):] != tuple(shape):
        raise ValueError(f"image shape {x.shape} does not end with {tuple(shape)}")
    batch = x.shape[:x.ndim - len(shape)]
    x = x.reshape(*batch, *grid)
    workers = _resolve_threads(threads)
    axes = tuple(range(-ndim, 0))
    pad = [(0, 0)] * len(batch) + [(m - m // 2, m // 2) for m in grid]
    xp = np.pad(x, pad)  # x = 0 lands at index N of the 2N grid
    big = scipy.fft.fftn(scipy.fft.ifftshift(xp, axes=axes), axes=axes, workers=workers)
    big *= kernel.astype(big.dtype, copy=False)
    out = scipy.fft.fftshift(scipy.fft.ifftn(big, axes=axes, workers=workers,
                                             overwrite_x=True), axes=axes)
    sl = tuple(slice(m - m // 2, m - m // 2 + m) for m in grid)
    out = out[(...,) + sl]
    return out.reshape(*batch, *shape)


def nufft(image, coords, *, eps: float = DEFAULT_EPS, upsampling: float | None = None,
          threads: int | None = None) -> np.ndarray:
    """Non-uniform forward DFT ``y_j = sum_x f(x) exp(-2 pi i k_j . x / N)``.

    Parameters
    ----------
    image : (..., *shape) array_like
        Image(s), array index ``N // 2`` is ``x = 0``; leading axes are batched.
    coords : (..., d) array_like
        k-space coordinates (cycles per FOV, ``k in [-N/2, N/2)``), d = 2 or 3; the image
        shape is taken as the last d axes of ``image`` (the last 3 if d = 2 and the last
        axis has length 1: 2D data stored as ``(N_i, N_j, 1)``).
    eps, upsampling, threads
        See :class:`NUFFTPlan`.

    Returns
    -------
    kdata : (..., *coords.shape[:-1]) ndarray, complex64 for single-precision input.
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
    """Adjoint NUFFT ``f(x) = sum_j y_j exp(+2 pi i k_j . x / N)`` (exact conjugate transpose).

    Parameters
    ----------
    kdata : (..., *coords.shape[:-1]) array_like
        Samples; leading axes are batched.
    coords : (..., d) array_like
        k-space coordinates (cycles per FOV).
    shape : sequence of int
        Image shape (d entries, optionally followed by length-1 axes).

    Returns
    -------
    image : (..., *shape) ndarray
    """
    plan = NUFFTPlan(coords, shape, eps=eps, upsampling=upsampling, threads=threads)
    return plan.adjoint(kdata)
