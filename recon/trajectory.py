"""k-space trajectories and Cartesian undersampling masks.

Every generator returns coordinates in the convention of :mod:`dualmode.recon.nufft`:
cycles per field of view, ``coords[..., a]`` pairs with image axis ``a`` and
``|k_a| <= N_a / 2`` (``+N/2`` and ``-N/2`` are the same DFT frequency). Masks are boolean
arrays whose index ``N // 2`` is ``k = 0`` (the layout of
:func:`dualmode.conventions.fft_centered`).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


__all__ = [
    "GOLDEN_ANGLE", "golden_angle_radial", "mask_coords", "poisson_disc_mask", "radial_3d",
    "variable_density_spiral",
]

#: Golden angle for full-diameter spokes, ``pi (sqrt 5 - 1) / 2`` = 111.25 degrees
#: (Winkelmann et al., IEEE TMI 26, 68, 2007).
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0

#: 2D golden means for 3D radial ordering (Chan et al., MRM 61, 354, 2009).
GOLDEN_MEANS_3D = (0.465571231876768, 0.682327803828019)


def _positive_int(value, field: str) -> int:
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


def _shape(shape, ndim: int) -> np.ndarray:
    shp = np.atleast_1d(np.asarray(shape, dtype=float))
    if shp.shape != (ndim,) or np.any(shp < 1):
        raise ValueError(f"shape must be {ndim} positive sizes, got {shape!r}")
    return shp


def _readout(n_readout: int) -> np.ndarray:
    """Normalised positions along a full spoke: ``-1/2 .. 1/2 - 1/n``, 0 at index n // 2."""
    return (np.arange(n_readout) - n_readout // 2) / n_readout


def golden_angle_radial(n_spokes: int, n_readout: int, shape=(256, 256)) -> np.ndarray:
    """2D radial trajectory, full-diameter spokes in golden-angle order.

    Spoke ``s`` has angle ``s * GOLDEN_ANGLE`` (mod pi) from image axis 0; sample ``r`` lies
    at ``(r - n_readout // 2) / n_readout * N`` along it (``n_readout = 2 N`` is the usual
    2x readout oversampling). Returns ``coords`` of shape ``(n_spokes, n_readout, 2)``.
    """
    n_spokes = _positive_int(n_spokes, "n_spokes")
    n_readout = _positive_int(n_readout, "n_readout")
    shp = _shape(shape, 2)
    theta = (np.arange(n_spokes) * GOLDEN_ANGLE) % math.pi
    direction = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    return _readout(n_readout)[None, :, None] * direction[:, None, :] * shp


def radial_3d(n_spokes: int, n_readout: int, shape=(128, 128, 128)) -> np.ndarray:
    """3D radial "kooshball", full-diameter spokes ordered by the 2D golden means.

    Spoke ``s`` points along ``(sqrt(1-z^2) cos a, sqrt(1-z^2) sin a, z)`` with
    ``z = frac(s g1)`` and ``a = 2 pi frac(s g2)`` (Chan et al. 2009); full spokes cover the
    other hemisphere. Returns ``(n_spokes, n_readout, 3)``.
    """
    n_spokes = _positive_int(n_spokes, "n_spokes")
    n_readout = _positive_int(n_readout, "n_readout")
    shp = _shape(shape, 3)
    s = np.arange(n_spokes)
    z = (s * GOLDEN_MEANS_3D[0]) % 1.0
    azimuth = 2 * math.pi * ((s * GOLDEN_MEANS_3D[1]) % 1.0)
    rho = np.sqrt(1.0 - z**2)
    direction = np.stack([rho * np.cos(azimuth), rho * np.sin(azimuth), z], axis=-1)
    return _readout(n_readout)[None, :, None] * direction[:, None, :] * shp


def variable_density_spiral(n_interleaves: int, n_samples: int, shape=(256, 256), *,
                            density_power: float = 2.0, undersampling: float = 1.0
                            ) -> np.ndarray:
    """Variable-density spiral ``k(t) = k_max t^p exp(i (2 pi T t + 2 pi l / L))``.

    ``t = 0 .. 1 - 1/n_samples`` (uniform in time), ``p = density_power`` (1: Archimedean,
    >1: denser centre), interleave ``l`` of ``L``. The number of turns ``T = p k_max / (L R)``
    makes the radial gap between neighbouring interleaves ``R = undersampling`` Cartesian
    cells at the edge (``k_max = max(N) / 2``) and smaller inside. Axis ``a`` is scaled to
    ``N_a / 2``. Returns ``(n_interleaves, n_samples, 2)``.
    """
    n_interleaves = _positive_int(n_interleaves, "n_interleaves")
    n_samples = _positive_int(n_samples, "n_samples")
    shp = _shape(shape, 2)
    if not density_power >= 1:
        raise ValueError(f"density_power must be >= 1, got {density_power!r}")
    if not undersampling > 0:
        raise ValueError(f"undersampling must be > 0, got {undersampling!r}")
    t = np.arange(n_samples) / n_samples
    turns = density_power * shp.max() / 2 / (n_interleaves * undersampling)
    radius = t**density_power / 2
    phase = 2 * math.pi * (turns * t[None, :] + np.arange(n_interleaves)[:, None] / n_interleaves)
    unit = np.stack([np.cos(phase), np.sin(phase)], axis=-1)
    return radius[None, :, None] * unit * shp


def mask_coords(mask) -> np.ndarray:
    """Coordinates ``k = index - N // 2`` of the ``True`` entries of a Cartesian mask, (M, d)."""
    mask = np.asarray(mask, dtype=bool)
    idx = np.argwhere(mask)
    return (idx - np.array(mask.shape) // 2).astype(float)


@nb.njit(cache=True)
def _sequential_poisson(order, radius, n0, n1):
    """Random sequential addition: accept cell ``order[q]`` if no accepted cell lies closer
    than its radius. Returns the boolean mask (n0, n1)."""
    mask = np.zeros((n0, n1), np.bool_)
    for q in range(order.shape[0]):
        idx = order[q]
        i = idx // n1
        j = idx % n1
        r = radius[i, j]
        r2 = r * r
        reach = int(math.ceil(r))
        ok = True
        for di in range(-reach, reach + 1):
            ii = i + di
            if ii < 0 or ii >= n0:
                continue
            for dj in range(-reach, reach + 1):
                jj = j + dj
                if jj < 0 or jj >= n1:
                    continue
                if mask[ii, jj] and di * di + dj * dj < r2:
                    ok = False
                    break
            if not ok:
                break
        if ok:
            mask[i, j] = True
    return mask


def poisson_disc_mask(shape, acceleration: float, *, calib=(16, 16), density_slope: float = 2.0,
                      seed: int = 0, tol: float = 0.02, max_iter: int = 40) -> np.ndarray:
    """Variable-density Poisson-disc mask for 2D Cartesian undersampling (e.g. k_j x k_k).

    Cells are visited in random order and kept if no kept cell lies within
    ``r(k) = r0 (1 + density_slope * rho)`` (``rho``: elliptical radius, 1 at the edge of
    k-space), i.e. the density falls by ``(1 + density_slope)^2`` from centre to edge.
    ``r0`` is found by bisection so that ``size / count`` equals ``acceleration`` within
    ``tol`` (relative) including the fully sampled ``calib`` box at the centre.

    Returns
    -------
    mask : (n0, n1) bool, index ``N // 2`` is ``k = 0``.
    """
    shp = tuple(int(s) for s in np.atleast_1d(shape))
    if len(shp) != 2 or min(shp) < 1:
        raise ValueError(f"shape must be 2 positive sizes, got {shape!r}")
    total = shp[0] * shp[1]
    if not (1.0 <= acceleration <= total):
        raise ValueError(f"acceleration must be in [1, {total}], got {acceleration!r}")
    cal = tuple(min(int(c), s) for c, s in zip(calib, shp))
    k0 = (np.arange(shp[0]) - shp[0] // 2) / max(shp[0] / 2, 1)
    k1 = (np.arange(shp[1]) - shp[1] // 2) / max(shp[1] / 2, 1)
    rho = np.sqrt(k0[:, None] ** 2 + k1[None, :] ** 2)
    profile = 1.0 + density_slope * rho
    calib_mask = np.zeros(shp, bool)
    calib_mask[tuple(slice(s // 2 - c // 2, s // 2 - c // 2 + c) for s, c in zip(shp, cal))] = True
    order = np.random.default_rng(seed).permutation(total)
    target = total / acceleration
    if calib_mask.sum() >= target or acceleration == 1.0:
        return calib_mask | (acceleration == 1.0)

    def sample(r0):
        m = _sequential_poisson(order, r0 * profile, shp[0], shp[1]) | calib_mask
        return m, int(m.sum())

    lo, hi = 0.0, float(max(shp))  # count(lo) = total > target >= count(hi)
    best, best_err = None, np.inf
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        m, count = sample(mid)
        err = abs(total / count - acceleration) / acceleration
        if err < best_err:
            best, best_err = m, err
        if err <= tol:
            break
        if count > target:
            lo = mid
        else:
            hi = mid
    return best
