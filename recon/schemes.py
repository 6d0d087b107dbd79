"""Polarization-sign schemes for sign-flip lock-in, and the drifts they cancel.

A scheme is the sequence of signs ``s_k = +-1`` of the shots (the microwave sweep
direction that sets the sign of the 13C hyperpolarization, Lv et al., PNAS 118,
e2023579118 (2021)); the same sequences serve as on/off patterns (``(1 + s) / 2``)
for modulated fluorescence. A linear lock-in ``H = sum_k w_k S_k`` with
``w_k proportional to s_k`` removes a slow additive drift ``d_k = sum_p D_p t_k^p``
exactly when the sign vector is orthogonal to every power ``t^p`` present:

    sum_k s_k t_k^p = 0     for p = 0 .. P.

The largest such ``P`` is the *cancelled drift order* (:func:`cancelled_drift_order`;
-1 if the signs do not even sum to zero). Repeating a block keeps its order (a
polynomial of a shifted time has the same degree). Blocks:

==================  =====  ========================================================
block               order  cancels
==================  =====  ========================================================
``+-``              0      constant background; a linear drift leaks half of its
                           per-shot step into ``H`` at any number of repetitions
``+-+-``            0      same as ``+-`` repeated twice
``+--+``            1      constant + linear drift (ABBA)
``+--+-++-``        2      constant + linear + quadratic (Thue-Morse, length 8)
Thue-Morse 2^(P+1)  P      polynomials up to degree ``P`` (Prouhet-Tarry-Escott)
==================  =====  ========================================================

When the drift is instead *estimated* (regressed out with ``t^0..t^P`` as in
:func:`dualmode.recon.signflip.signflip_combine`), every scheme gives an unbiased
``H``; the price is noise: the variance of ``H`` grows by ``1 / efficiency`` with
``efficiency = ||P_T s||^2 / ||s||^2`` and ``P_T`` the projector orthogonal to the
drift polynomials (:func:`drift_efficiency`). Orthogonal schemes have efficiency 1.

Efficiencies (``drift_efficiency``) for linear / quadratic drift regression:
``+-`` x2: 0.80 / 0.80, x8: 0.988 / 0.988; ``+--+`` x2: 1 / 0.952, x8: 1 / 0.9998;
``+--+-++-`` x1: 1 / 1 (one ``+--+`` block cannot separate a quadratic: efficiency 0).

Recommendation: ``"+--+"`` (ABBA), at least 2 cycles. It cancels constant and
linear drift with no noise penalty in the shortest block, needs no drift model for
that, and leaves residual degrees of freedom for the noise estimate and a quadratic
term. Use ``"+--+-++-"`` when the polarization buildup or the thermal background
drift is visibly curved over the acquisition.
"""

from __future__ import annotations

import numpy as np

#: Named blocks accepted by :func:`polarization_scheme` in addition to +/- strings.
NAMED_BLOCKS = {
    "alternating": "+-",
    "abba": "+--+",
    "thue-morse": "+--+-++-",
}


def polarization_scheme(name: str, n_cycles: int = 1) -> np.ndarray:
    """Sign sequence of a scheme: the block ``name`` repeated ``n_cycles`` times.

    Parameters
    ----------
    name : str
        A block of ``+`` and ``-`` characters (``"+-"``, ``"+--+"``, ``"+-+-"``,
        ``"+--+-++-"``; spaces ignored) or one of :data:`NAMED_BLOCKS`.
    n_cycles : int
        Number of repetitions of the block.

    Returns
    -------
    signs : (len(block) * n_cycles,) ndarray of float, values +1/-1
    """
    block = NAMED_BLOCKS.get(str(name).strip().lower(), str(name)).replace(" ", "")
    if not block or set(block) - {"+", "-"}:
        raise ValueError(f"scheme {name!r}: expected a string of '+'/'-' or one of {sorted(NAMED_BLOCKS)}")
    if int(n_cycles) < 1:
        raise ValueError(f"n_cycles must be >= 1, got {n_cycles}")
    signs = np.array([1.0 if c == "+" else -1.0 for c in block])
    return np.tile(signs, int(n_cycles))


def scheme_string(signs) -> str:
    """Inverse of :func:`polarization_scheme` for one block: ``[1, -1, -1, 1] -> "+--+"``."""
    return "".join("+" if v > 0 else "-" for v in np.asarray(signs, dtype=float))


def normalized_times(n_shots: int, shot_times=None) -> np.ndarray:
    """Shot times mapped affinely to ``[-1, 1]`` (shot index when ``shot_times`` is None)."""
    t = np.arange(n_shots, dtype=float) if shot_times is None else np.asarray(shot_times, dtype=float)
    if t.shape != (n_shots,) or not np.all(np.isfinite(t)):
        raise ValueError(f"shot_times must be {n_shots} finite numbers")
    span = t.max() - t.min()
    return np.zeros(n_shots) if span == 0 else 2.0 * (t - t.min()) / span - 1.0


def drift_basis(n_shots: int, order: int, shot_times=None) -> np.ndarray:
    """Columns ``tau^0 .. tau^order`` of the drift polynomial, ``tau`` in ``[-1, 1]``.

    Returns an ``(n_shots, order + 1)`` array; ``order = -1`` gives zero columns.
    """
    tau = normalized_times(n_shots, shot_times)
    return np.stack([tau**p for p in range(int(order) + 1)], axis=1) if order >= 0 else np.zeros((n_shots, 0))


def cancelled_drift_order(signs, shot_times=None, max_order: int = 8, rtol: float = 1e-9) -> int:
    """Largest ``P`` with ``sum_k s_k t_k^p = 0`` for all ``p <= P`` (-1 if none).

    A plain signed average of the shots then removes any polynomial drift of degree
    ``<= P`` without estimating it.
    """
    s = np.asarray(signs, dtype=float)
    basis = drift_basis(s.size, max_order, shot_times)
    order = -1
    for p in range(basis.shape[1]):
        col = basis[:, p]
        if abs(s @ col) > rtol * np.linalg.norm(s) * max(np.linalg.norm(col), 1.0):
            break
        order = p
    return order


def drift_efficiency(signs, order: int, shot_times=None) -> float:
    """Noise efficiency ``||P_T s||^2 / ||s||^2`` of regressing out drift up to ``order``.

    1 when the scheme is orthogonal to the drift polynomials; ``Var(H)`` scales as
    ``1 / efficiency``. Zero means the drift and the signal cannot be separated.
    """
    s = np.asarray(signs, dtype=float)
    basis = drift_basis(s.size, order, shot_times)
    if basis.shape[1] == 0:
        return 1.0
    q, _ = np.linalg.qr(basis)
    resid = s - q @ (q.T @ s)
    return float(resid @ resid / (s @ s))


def describe_scheme(signs, max_order: int = 3, shot_times=None) -> dict:
    """JSON-friendly summary: scheme string, cancelled order, efficiency per drift order."""
    s = np.asarray(signs, dtype=float)
    return {
        "signs": scheme_string(s),
        "n_shots": int(s.size),
        "n_plus": int(np.sum(s > 0)),
        "n_minus": int(np.sum(s < 0)),
        "cancelled_drift_order": cancelled_drift_order(s, shot_times),
        "efficiency_by_order": {
            str(p): drift_efficiency(s, p, shot_times) for p in range(min(max_order, s.size - 2) + 1)
        },
    }
