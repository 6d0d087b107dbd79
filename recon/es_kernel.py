"""The "exponential of semicircle" (ES) gridding kernel of :mod:`dualmode.recon.nufft`.

``phi(z) = exp(beta (sqrt(1 - (2 z / w)^2) - 1))`` for ``|z| <= w/2`` (0 outside), of width
``w`` grid points and shape ``beta``, evaluated in the numba kernels as a piecewise polynomial
(one per grid offset), and its Fourier transform ``Phi`` used for deapodisation.

How :mod:`dualmode.recon.nufft` uses it
---------------------------------------
Gridding with the "exponential of semicircle" kernel
``phi(z) = exp(beta (sqrt(1 - (2 z / w)^2) - 1))``, ``|z| <= w/2``, on a grid upsampled by
``sigma`` (``n = sigma N``), evaluated by a piecewise polynomial (FINUFFT [1]_). Forward: divide by the kernel's Fourier
transform ``Phi(x / n)`` (deapodisation), zero-pad to ``n``, FFT (:mod:`scipy.fft` with
``workers``), interpolate ``y_j = sum_m F_m phi(u_j - m)`` at ``u_j = k_j n / N + n / 2``
(the oversampled grid is centred, k = 0 at index ``n/2``, by a ``(-1)^x`` factor folded into
the deapodisation; ``n`` is even). Adjoint: spread, inverse FFT without ``1/n``, crop,
deapodise. Width ``w`` and ``beta`` follow FINUFFT's
rules for the requested relative accuracy ``eps``. Spreading is race-free (see
:mod:`dualmode.recon.nufft_kernels`).

References
----------
.. [1] A. H. Barnett, J. Magland and L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci. Comput.
   41(5), C479-C504 (2019).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["default_upsampling", "kernel_ft", "kernel_parameters", "kernel_polynomial"]


def kernel_parameters(eps: float, upsampling: float) -> tuple[int, float]:
    """Width ``w`` (grid points) and shape ``beta`` of the ES kernel for accuracy ``eps``.

    The aliasing error of the ES kernel decays like ``exp(-pi w sqrt(1 - 1/sigma))``
    (Barnett et al. 2019, eq. 4.6); we take the smallest ``w`` with
    ``4 exp(-pi w sqrt(1 - 1/sigma)) <= eps`` and ``beta = 0.95 pi (1 - 1/(2 sigma)) w``
    (the constants 4 and 0.95 were fitted on random points against FINUFFT at 1e-12;
    relative l2 errors at ``eps = 1e-3`` are 0.4e-3 to 1.1e-3 for sigma in [1.25, 2]).

    Examples
    --------
    >>> kernel_parameters(1e-3, 2.0)
    (4, 8.953539062730911)
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
    2 M-point radial benchmark at ``eps = 1e-3`` (vectorised kernels, one thread) sigma 1.25
    (160^3 grid for 128^3, width 6, error 6.1e-4) took 0.19 s forward and 0.23 s adjoint,
    sigma 1.5 (192^3, width 5, error 4.9e-4) 0.21 and 0.22 s, sigma 2 (256^3, width 4) 0.29
    and 0.34 s. Wider kernels
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
def kernel_polynomial(width: int, beta: float, eps: float) -> np.ndarray:
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


def kernel_ft(xi: np.ndarray, width: int, beta: float) -> np.ndarray:
    """``Phi(xi) = int phi(z) cos(2 pi z xi) dz`` by Gauss-Legendre quadrature."""
    nodes, weights = _gauss_legendre(2 * width + 60)
    z = 0.25 * width * (nodes + 1)  # [0, w/2]
    vals = _es(z, width, beta) * (0.25 * width * weights)
    return 2.0 * np.cos(2 * np.pi * np.outer(xi, z)) @ vals
