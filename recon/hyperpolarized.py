"""Hyperpolarized signal bookkeeping across excitations.

Each excitation with flip angle alpha reads ``sin(alpha)`` of the longitudinal
polarization and leaves ``cos(alpha)``; between excitations it relaxes with T1
(toward a thermal level that is negligible for hyperpolarized 13C). The n-th line
of a shot therefore carries the weight

    w_n = sin(alpha_n) * prod_{m<n} cos(alpha_m) * exp(-n TR / T1)

which multiplies k-space line by line and blurs the point-spread function along
the phase-encode order (a linear order makes it asymmetric; centre-out keeps the
k = 0 line at full weight). See Lv et al., PNAS 118, e2023579118 (2021).
"""

from __future__ import annotations

import numpy as np


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
    return w / centre


def correct_rf_depletion(kspace: np.ndarray, line_order: np.ndarray, flip_deg, tr_ms: float = 0.0,
                         t1_s: float = np.inf) -> np.ndarray:
    """Divide Cartesian k-space ``[..., k_i, k_j, k_k]`` by :func:`kspace_weighting`."""
    w = kspace_weighting(line_order, flip_deg, tr_ms, t1_s)
    return kspace / w[None, :, :].astype(kspace.real.dtype)


def constant_signal_flip_angles(n_lines: int) -> np.ndarray:
    """Variable flip-angle schedule giving equal signal on every line (degrees).

    ``theta_n = arctan(1 / sqrt(N - n))`` for ``n = 1..N`` (the last one is 90 deg),
    which spends all polarization evenly (Zhao et al., JMR B 113, 179 (1996)).
    """
    n = np.arange(n_lines)
    return np.rad2deg(np.arctan2(1.0, np.sqrt(n_lines - n - 1.0)))
