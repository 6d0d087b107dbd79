"""Hyperpolarized signal bookkeeping across excitations.

Each excitation with flip angle alpha reads ``sin(alpha)`` of the longitudinal
polarization and leaves ``cos(alpha)``; between excitations it relaxes with T1
(toward a thermal level that is negligible for hyperpolarized 13C). The n-th line
of a shot therefore carries the weight

    w_n = sin(alpha_n) * prod_{m<n} cos(alpha_m) * exp(-n TR / T1)

which multiplies k-space line by line and blurs the point-spread function along
the phase-encode order (a linear order makes it asymmetric; centre-out keeps the
k = 0 line at full weight). See Lv et al., PNAS 118, e2023579118 (2021).

Point-spread function
    The image is the object convolved with ``IDFT(w(k))`` along the phase-encode
    axis. A *linear* order (lines acquired from ``-k_max`` to ``+k_max``) with a
    constant flip angle gives a weight decaying monotonically across k-space: the
    PSF gets an odd imaginary part (an asymmetric, direction-dependent blur) and the
    edge opposite to the first lines is smeared. A *centre-out* order gives a
    nearly symmetric weight peaked at ``k = 0``: a real, symmetric, broadened PSF
    (loss of resolution, no shift). The constant-signal schedule of
    :func:`constant_signal_flip_angles` makes ``w`` flat: the PSF of the plain DFT.
    :func:`psf_of_weighting` and :func:`psf_metrics` quantify this.

Hyperpolarized or thermal
    The model holds only for hyperpolarized magnetization, which is not replenished between
    excitations. Thermal-equilibrium data (1H, thermal 13C) recover toward equilibrium
    and reach a steady state: callers pass ``hyperpolarized=False`` and no weighting is
    applied (:func:`depletion_applies`). A flip angle at or above 90 deg spends all of the
    polarization (``cos alpha <= 0``) and is refused for hyperpolarized data.

Correction
    Dividing k-space by ``w`` restores the PSF but multiplies the noise of each line
    by ``1 / w``; :func:`correct_rf_depletion` with ``noise_to_signal > 0`` uses the
    Wiener filter ``w / (w^2 + nsr)`` instead, which never amplifies noise by more
    than ``1 / (2 sqrt(nsr))``.
"""

from __future__ import annotations

import numpy as np



def depletion_applies(flip_deg: float | None, hyperpolarized: bool = True) -> bool:
    """Whether the RF-depletion model applies; refuse a hyperpolarized flip angle >= 90 deg.

    Parameters
    ----------
    flip_deg : float or None
        Constant flip angle of the acquisition (``None``: unknown, no correction).
    hyperpolarized : bool
        ``False`` for thermal-equilibrium data (no depletion model).

    Raises
    ------
    ValueError
        ``hyperpolarized`` with ``flip_deg`` outside ``(0, 90)`` (names ``mri.flip_angle_deg``).

    Examples
    --------
    >>> depletion_applies(10.0), depletion_applies(90.0, hyperpolarized=False)
    (True, False)
    """
    if not hyperpolarized or flip_deg is None:
        return False
    if not 0 < float(flip_deg) < 90:
        raise ValueError(f"flip angle {float(flip_deg):g} deg: hyperpolarized data need 0 < flip < 90, the "
                         "RF-depletion model sin(a) cos(a)^n is zero or negative beyond (check "
                         "mri.flip_angle_deg, or set mri.hyperpolarized / hyperpolarized=False for thermal data)")
    return True


def excitation_weights(n_lines: int, flip_deg, tr_ms: float = 0.0, t1_s: float = np.inf) -> np.ndarray:
    """Signal weight ``w_n`` of each excitation ``n = 0..n_lines-1`` (see module docstring).

    Parameters
    ----------
    n_lines : int
        Number of excitations in one shot.
    flip_deg : float or (n_lines,) array
        Flip angle(s) in degrees.
    tr_ms : float
        Time between excitations.
    t1_s : float
        Longitudinal relaxation time (inf: no decay).
    """
    alpha = np.deg2rad(np.broadcast_to(np.asarray(flip_deg, dtype=float), (n_lines,)))
    left = np.concatenate([[1.0], np.cumprod(np.cos(alpha))[:-1]])
    decay = np.exp(-np.arange(n_lines) * (tr_ms * 1e-3) / t1_s) if np.isfinite(t1_s) else 1.0
    return np.sin(alpha) * left * decay


def kspace_weighting(line_order: np.ndarray, flip_deg, tr_ms: float = 0.0, t1_s: float = np.inf) -> np.ndarray:
    """Relative weight of each Cartesian line, normalised to 1 at the ``k = 0`` line.

    ``line_order[j, k]`` is the excitation index of line ``(k_j, k_k)``. The result has
    the shape of ``line_order`` and broadcasts against k-space ``[..., k_i, k_j, k_k]``
    via ``[:, None]`` handling by the caller (see :func:`correct_rf_depletion`).
    """
    order = np.asarray(line_order, dtype=int)
    w = excitation_weights(order.size, flip_deg, tr_ms, t1_s)[order]
    centre = w[tuple(s // 2 for s in order.shape)]
    if not np.all(w > 0) or not centre > 0:
        raise ValueError("RF-depletion weights reach zero (a flip angle >= 90 deg spends all polarization): "
                         "check mri.flip_angle_deg")
    return w / centre


def correct_rf_depletion(kspace: np.ndarray, line_order: np.ndarray, flip_deg, tr_ms: float = 0.0,
                         t1_s: float = np.inf, noise_to_signal: float = 0.0) -> np.ndarray:
    """Undo the line weighting of Cartesian k-space ``[..., k_i, k_j, k_k]``.

    Parameters
    ----------
    kspace : ndarray
        Centred Cartesian k-space, lines along the last two axes.
    line_order : (n_j, n_k) int array
        Excitation index of each line (see :func:`line_order_linear`,
        :func:`line_order_centre_out`).
    flip_deg : float or (n_lines,) array
        Flip angle, or one per excitation (variable flip angles).
    tr_ms, t1_s : float
        Repetition time and T1 of the within-shot decay.
    noise_to_signal : float
        0: plain division by :func:`kspace_weighting`. ``> 0``: Wiener filter
        ``w / (w^2 + nsr)`` (``nsr`` = noise power over signal power, relative to the
        ``k = 0`` line whose weight is 1), which bounds the noise gain.
    """
    w = kspace_weighting(line_order, flip_deg, tr_ms, t1_s)
    if noise_to_signal < 0:
        raise ValueError(f"noise_to_signal must be >= 0, got {noise_to_signal}")
    gain = 1.0 / w if noise_to_signal == 0 else w / (w**2 + noise_to_signal)
    return kspace * gain[None, :, :].astype(kspace.real.dtype)


def line_order_linear(n_j: int, n_k: int = 1) -> np.ndarray:
    """Excitation index of each line for a linear order: ``k_j`` fastest from ``-k_max``, then ``k_k``."""
    return np.arange(n_j * n_k).reshape(n_k, n_j).T.copy()


def line_order_centre_out(n_j: int, n_k: int = 1) -> np.ndarray:
    """Excitation index for a centre-out (centric) order: lines sorted by distance from ``k = 0``.

    1D: ``0, +1, -1, +2, -2, ...``; 2D: elliptical centric (radius normalised by the
    matrix, ties broken by angle so the order is deterministic).
    """
    kj = (np.arange(n_j) - n_j // 2) / max(n_j, 1)
    kk = (np.arange(n_k) - n_k // 2) / max(n_k, 1)
    gj, gk = np.meshgrid(kj, kk, indexing="ij")
    radius = np.hypot(gj, gk)
    tiebreak = np.where(gj + gk >= 0, 0, 1)  # positive side first at equal radius
    angle = np.arctan2(gk, gj)
    rank = np.lexsort((angle.ravel(), tiebreak.ravel(), np.round(radius.ravel(), 12)))
    order = np.empty(n_j * n_k, dtype=int)
    order[rank] = np.arange(n_j * n_k)
    return order.reshape(n_j, n_k)


def psf_of_weighting(weights: np.ndarray, oversample: int = 16) -> np.ndarray:
    """Complex 1D PSF of a line weighting ``weights[k]`` (centred, ``k = 0`` at ``N // 2``).

    Sinc-interpolated on an ``oversample``-times finer grid, ``x = 0`` at index
    ``N * oversample // 2``, normalised so that ``weights == 1`` gives a peak of 1.
    """
    from .windows import psf_of_window

    return psf_of_window(np.asarray(weights, dtype=float), oversample)


def psf_metrics(psf: np.ndarray, oversample: int = 16) -> dict:
    """FWHM (voxels), peak shift (voxels) and asymmetry of a 1D PSF from :func:`psf_of_weighting`.

    ``asymmetry = ||psf(x) - psf(-x)|| / ||psf(x) + psf(-x)||``, by Parseval the ratio
    of the odd to the even part of the weighting: 0 for a symmetric weighting
    (real PSF), growing with the tilt of a linear order.
    """
    from .windows import psf_fwhm

    p = np.asarray(psf)
    m = p.size
    centre = m // 2
    mirrored = np.roll(p[::-1], 1 if m % 2 == 0 else 0)  # index centre + x -> centre - x
    asym = np.linalg.norm(p - mirrored) / np.linalg.norm(p + mirrored)
    return {"fwhm": psf_fwhm(p, oversample), "shift": (int(np.argmax(np.abs(p))) - centre) / oversample,
            "asymmetry": float(asym), "peak": float(np.abs(p).max())}


def constant_signal_flip_angles(n_lines: int) -> np.ndarray:
    """Variable flip-angle schedule giving equal signal on every line (degrees).

    ``theta_n = arctan(1 / sqrt(N - n))`` for ``n = 1..N`` (the last one is 90 deg),
    which spends all polarization evenly (Zhao et al., JMR B 113, 179 (1996)).
    """
    n = np.arange(n_lines)
    return np.rad2deg(np.arctan2(1.0, np.sqrt(n_lines - n - 1.0)))
