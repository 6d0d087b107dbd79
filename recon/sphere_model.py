"""The image of a sphere on a Cartesian grid, and its parts, for :mod:`.quantify`.

``m(x - x_0) = (1/N) sum_k f(pi d |k| / FOV) e^{2 pi i k (x - x_0) / N}`` with the sphere's
form factor ``f(u) = 3 (sin u - u cos u) / u^3``: the Dirichlet point-spread function of
the grid blurred by a sphere of diameter ``d`` (``sum_x m = 1``), as the whole grid
(:func:`particle_model`), its spectrum (:func:`spectrum`), or on a small window with its
derivatives (:func:`window_model`, for the fits), plus the partial inverse DFT of any
spectrum on a window (:func:`window_idft`).

Sampled support. A non-Cartesian (radial, centre-out, spiral) acquisition samples only the
ellipsoid ``sum_d (k_d / K_d)^2 <= 1`` of k-space (``K_d`` in cycles/FOV, the project's k
units: :mod:`dualmode.conventions`), not the grid's square, and its image is the object
seen through that support. With ``k_max = (K_0, K_1, K_2)`` (or one ``K`` for every axis)
every function here multiplies the spectrum by the support's indicator
``chi(k)``: ``m(x) = (1/N) sum_k chi(k) f(pi d |k| / FOV) e^{2 pi i k x / N}`` (still
``sum_x m = 1``). ``k_max=None``, or a support that holds the whole grid, is the square.
"""

from __future__ import annotations

import functools

import numpy as np

from dualmode.conventions import ifft_centered


def _form_factor(u: np.ndarray) -> np.ndarray:
    us = np.where(np.abs(u) < 1e-3, 1.0, u)
    return np.where(np.abs(u) < 1e-3, 1.0 - u**2 / 10, 3.0 * (np.sin(us) - us * np.cos(us)) / us**3)


def particle_model(shape, voxel_mm, centre_vox, diameter_mm: float, k_max=None) -> np.ndarray:
    """``m(x - x_0)`` on the grid (``sum = 1``): a sphere of ``diameter_mm`` at ``centre_vox`` (centred index),
    seen through the sampled support ``k_max`` (cycles/FOV per axis, or one for all; ``None``: the grid).

    Examples
    --------
    >>> m = particle_model((32, 32, 1), (0.2, 0.2, 1.0), (0.3, -1.0, 0.0), 0.2)
    >>> round(float(m.sum()), 6)
    1.0
    """
    return ifft_centered(spectrum(shape, voxel_mm, centre_vox, diameter_mm, k_max)).real


def support_semi_axes(shape, k_max) -> tuple | None:
    """``k_max`` (``None``, one number or one per axis, cycles/FOV) as a tuple of semi-axes, or ``None``
    when the ellipsoid holds every frequency of the grid (then the support is the grid's square).

    Examples
    --------
    >>> support_semi_axes((64, 64, 1), 31.5)
    (31.5, 31.5, 31.5)
    >>> support_semi_axes((64, 64, 1), 64) is None
    True
    """
    if k_max is None:
        return None
    semi = np.broadcast_to(np.asarray(k_max, float), (3,))
    if not np.all(semi > 0):
        raise ValueError(f"k_max must be positive, got {k_max}")
    corner = sum((n // 2 / s) ** 2 for n, s in zip(shape, semi) if n > 1)
    return None if corner <= 1.0 + 1e-12 else tuple(float(v) for v in semi)


def spectrum(shape, voxel_mm, centre_vox, diameter_mm: float, k_max=None) -> np.ndarray:
    """Centred spectrum of :func:`particle_model`: ``chi(k) f(pi d |k|) e^{-2 pi i k.x_0 / N}``.

    The form factor is evaluated once per distinct ``|k|`` of the grid (:func:`_frequency_grid`)
    and the phase ramp is the outer product of one ramp per axis.
    """
    shape = tuple(int(n) for n in shape)
    _, kabs, index, inside = _frequency_grid(shape, tuple(float(v) for v in voxel_mm),
                                             support_semi_axes(shape, k_max))
    ramps = [np.exp(-2j * np.pi * (np.arange(n) - n // 2) * float(c) / n) for n, c in zip(shape, centre_vox)]
    ramp = ramps[0][:, None, None] * (ramps[1][:, None] * ramps[2][None, :])[None]
    return (inside * _form_factor(np.pi * diameter_mm * kabs))[index].reshape(shape) * ramp


@functools.lru_cache(maxsize=8)
def _frequency_grid(shape: tuple, voxel_mm: tuple, semi: tuple | None = None):
    """Centred frequency indices per axis, the distinct ``|k|`` (1/mm) of the grid, each
    frequency's index into them (``(N0, N1 N2)``) and the support's indicator per distinct
    value (frequencies outside the ellipsoid ``semi`` share one distinct value, ``|k| = 0``,
    indicator 0), computed as :func:`particle_model` does."""
    k = [np.arange(n) - n // 2 for n in shape]
    kmm2 = np.broadcast_to(sum(np.meshgrid(*[(kk / (n * v)) ** 2 for kk, n, v in zip(k, shape, voxel_mm)],
                                           indexing="ij", sparse=True)), shape)
    if semi is not None:
        rho2 = sum(np.meshgrid(*[(kk / s) ** 2 for kk, s in zip(k, semi)], indexing="ij", sparse=True))
        kmm2 = np.where(rho2 <= 1.0 + 1e-12, kmm2, -1.0)
    distinct, index = np.unique(kmm2, return_inverse=True)
    inside = (distinct >= 0).astype(float)
    return k, np.sqrt(np.maximum(distinct, 0.0)), index.reshape(shape[0], -1), inside


def _form_factor_derivative(u: np.ndarray) -> np.ndarray:
    """``f'(u) = 3 (sin u / u^2 - f(u) / u)``; its series ``-u/5 + u^3/70`` below 0.01 (cancellation)."""
    us = np.where(np.abs(u) < 0.01, 1.0, u)
    return np.where(np.abs(u) < 0.01, -u / 5 + u**3 / 70, 3.0 * (np.sin(us) / us**2 - _form_factor(us) / us))


def _first_axis_half(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Real weights of an even spectrum's inverse DFT along one axis, on ``k >= 0`` only.

    For ``f(k) = f(-k)``, ``sum_k f(k) e^{2 pi i k x / N} / N = sum_{k >= 0} c_k f(k) cos(2 pi k x / N) / N``
    (``c_0 = 1``, ``c_k = 2``) plus, for even ``N``, the unpaired ``k = -N/2`` term
    ``f(-N/2) e^{-i pi x} / N``. Returns ``(cos (W, K), d cos / d x_0 (W, K), nyquist (W,) or None)``
    at offsets ``x = position - x_0``; columns ``k = 0 .. ceil(N/2) - 1`` (array rows ``N // 2 ..``).
    """
    k = np.arange(n - n // 2)
    theta = 2 * np.pi * np.outer(x, k) / n
    c = np.where(k == 0, 1.0, 2.0) / n
    nyq = np.exp(-1j * np.pi * x) / n if n % 2 == 0 and n > 1 else None
    return c * np.cos(theta), c * np.sin(theta) * (2 * np.pi * k / n), nyq


def window_model(shape, voxel_mm, centre_vox, diameter_mm: float, window: tuple, jacobian: bool = False,
                 k_max=None):
    """``particle_model(shape, voxel_mm, centre_vox, diameter_mm, k_max)[window]``, computed on the window only;
    with ``jacobian``, also its derivatives along each axis of ``centre_vox`` and ``diameter_mm``.

    The form factor is evaluated once per distinct ``|k|`` of the grid, and the inverse DFT
    is restricted to the window's voxels axis by axis (``E_a[x, k] = e^{2 pi i k (x - x_0) / N_a} / N_a``,
    ``d E_a / d x_0 = -2 pi i k / N_a E_a``, ``d f / d d = pi |k| f'(pi d |k|)``): O(N W) per call
    instead of a whole-grid FFT, which made the fits of a 3D folder cost tens of seconds. The
    form factor is even in ``k_0``, so the sum over axis 0 runs over ``k_0 >= 0`` with real
    cosine weights (:func:`_first_axis_half`): a quarter of the work of the complex sum.
    Agrees with :func:`particle_model` to rounding (~1e-15 relative).

    Returns the model ``(W0, W1, W2)``, or ``(model, d model / d x0 (3, W0, W1, W2), d model / d d)``.
    """
    shape = tuple(int(n) for n in shape)
    k, kabs, index, inside = _frequency_grid(shape, tuple(float(v) for v in voxel_mm),
                                             support_semi_axes(shape, k_max))
    u = np.pi * diameter_mm * kabs
    specs = [inside * _form_factor(u)] + ([inside * np.pi * kabs * _form_factor_derivative(u)] if jacobian else [])
    e = [np.exp(2j * np.pi * np.outer(np.arange(n)[s] - n // 2 - c, kk) / n) / n
         for kk, n, s, c in zip(k, shape, window, centre_vox)]
    de = [ea * (-2j * np.pi * kk / n) for ea, kk, n in zip(e, k, shape)]
    half = _first_axis_half(shape[0], np.arange(shape[0])[window[0]] - shape[0] // 2 - centre_vox[0])

    def first(spec, deriv):  # sum over axis 0 (see _first_axis_half); deriv: also d / d x0
        cos, sin, nyq = half
        mat = np.concatenate([cos, sin]) if deriv else cos
        f = (mat @ spec[index[shape[0] // 2:]]).reshape(-1, shape[1], shape[2]).astype(complex)
        if nyq is not None:  # the unpaired -N/2 row: e^{-i pi x} / N, and its derivative i pi e^{-i pi x} / N
            row = spec[index[0]].reshape(shape[1], shape[2])
            f += np.concatenate([nyq, 1j * np.pi * nyq] if deriv else [nyq])[:, None, None] * row
        return f.reshape(2 if deriv else 1, -1, shape[1], shape[2])

    first_m = first(specs[0], jacobian)

    def rest(out, e1, e2):
        return ((e1 @ out) @ e2.T).real

    model = rest(first_m[0], e[1], e[2])
    if not jacobian:
        return model
    d_pos = np.stack([rest(first_m[1], e[1], e[2]), rest(first_m[0], de[1], e[2]),
                      rest(first_m[0], e[1], de[2])])
    return model, d_pos, rest(first(specs[1], False)[0], e[1], e[2])


def window_idft(spec: np.ndarray, window: tuple) -> np.ndarray:
    """``Re(ifft_centered(spec))[window]`` by a partial inverse DFT per axis (O(N W), no whole-grid FFT)."""
    shape = spec.shape
    e = [np.exp(2j * np.pi * np.outer(np.arange(n)[s] - n // 2, np.arange(n) - n // 2) / n) / n
         for n, s in zip(shape, window)]
    out = (e[0] @ spec.reshape(shape[0], -1)).reshape(-1, shape[1], shape[2])
    return ((e[1] @ out) @ e[2].T).real


def hermitian(spec: np.ndarray) -> np.ndarray:
    """``(s(k) + conj(s(-k))) / 2`` on the centred grid: the spectrum of ``Re(ifft_centered(s))``."""
    flip = spec
    for axis, n in enumerate(spec.shape):
        flip = np.take(flip, (2 * (n // 2) - np.arange(n)) % n, axis=axis)
    return (spec + np.conj(flip)) / 2


def filter_spectrum(shape, voxel_mm, diameter_mm: float, k_max=None) -> tuple[np.ndarray, float]:
    """Spectrum of the particle model at the origin (real and even) and ``||m||`` (Parseval)."""
    spec = spectrum(shape, voxel_mm, np.zeros(3), diameter_mm, k_max).real
    return spec, float(np.sqrt(np.sum(spec**2) / spec.size))
