"""Weighted point-set fits (Umeyama/Kabsch) with an explicit mirror choice, and
leave-one-out target registration error.

The fit minimises ``sum_n w_n || d_n - (c R s_n + t) ||^2`` over a rotation (or
rotoreflection) ``R``, translation ``t`` and, for ``model="similarity"``, the
scale ``c`` (for ``"rigid"`` the scale is fixed, e.g. 1e-3 for um -> mm).
Closed form: with weighted centroids and cross-covariance
``S = sum w (d - d0)(s - s0)^T / sum w = U D V^T``, ``R = U diag(1, .., det) V^T``
and ``c = tr(D diag(1, .., det)) / var_w(s)``.

Reference: S. Umeyama, "Least-squares estimation of transformation parameters
between two point patterns", IEEE TPAMI 13(4):376-380 (1991).

``planar=True`` fits only the in-plane (x, y) part and keeps the z axis of the
source parallel to +z of the destination (the optical z axis is assumed parallel
to MRI z); z is then placed at the weighted mean of ``d_z - c s_z``.
"""

from __future__ import annotations

import numpy as np


def _umeyama(src, dst, w, scale, similarity, det_sign, bounds=None):
    wsum = w.sum()
    s0 = (w[:, None] * src).sum(0) / wsum
    d0 = (w[:, None] * dst).sum(0) / wsum
    xs, yd = src - s0, dst - d0
    cov = (w[:, None, None] * yd[:, :, None] * xs[:, None, :]).sum(0) / wsum
    u, sing, vt = np.linalg.svd(cov)
    fix = np.ones(src.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) * det_sign < 0:
        fix[-1] = -1.0
    rot = u @ np.diag(fix) @ vt
    if similarity:
        var = (w * (xs**2).sum(1)).sum() / wsum
        fitted = float((sing * fix).sum() / var) if var > 0 else scale
        scale = fitted if bounds is None else float(np.clip(fitted, *bounds))
    trans = d0 - scale * rot @ s0
    return rot, scale, trans


def fit_points(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    model: str = "rigid",
    scale: float = 1.0,
    mirror: bool | None = None,
    planar: bool = False,
    scale_bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, float]:
    """Weighted least-squares transform ``dst ~ A @ src`` (4x4).

    Parameters
    ----------
    src, dst : (N, 3) ndarray
        Corresponding points (e.g. optical um and MRI mm).
    weights : (N,) ndarray, optional
        Non-negative weights (reliability); uniform by default.
    model : {"rigid", "similarity"}
        Rigid keeps ``scale`` fixed; similarity estimates it.
    scale : float
        Fixed (rigid) or fallback scale, e.g. ``1e-3`` for um -> mm.
    mirror : bool or None
        Force ``det R = -1`` (True) or ``+1`` (False); ``None`` picks the lower residual,
        preferring a proper rotation on ties.
    planar : bool
        In-plane fit with the source z axis kept along destination +z.
    scale_bounds : (float, float), optional
        Similarity only: the fitted scale is clipped to this range (for a least-squares
        scale this is the constrained optimum, the objective being quadratic in ``c``).

    Returns
    -------
    affine : (4, 4) ndarray
    rms : float
        Weighted RMS residual in destination units.
    """
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    w = np.ones(len(src)) if weights is None else np.clip(np.asarray(weights, float), 1e-12, None)
    if model not in ("rigid", "similarity"):
        raise ValueError(f"model must be 'rigid' or 'similarity', got {model!r}")
    need = 2 if planar else 3
    if len(src) < need:
        raise ValueError(f"need at least {need} point pairs, got {len(src)}")
    signs = [-1.0] if mirror else [1.0] if mirror is False else [1.0, -1.0]
    best = None
    for sign in signs:
        if planar:
            r2, c, t2 = _umeyama(src[:, :2], dst[:, :2], w, scale, model == "similarity", sign, scale_bounds)
            rot = np.eye(3)
            rot[:2, :2] = r2
            tz = (w * (dst[:, 2] - c * src[:, 2])).sum() / w.sum()
            trans = np.array([t2[0], t2[1], tz])
        else:
            rot, c, trans = _umeyama(src, dst, w, scale, model == "similarity", sign, scale_bounds)
        aff = np.eye(4)
        aff[:3, :3] = c * rot
        aff[:3, 3] = trans
        res = dst - (src @ aff[:3, :3].T + trans)
        if planar:
            res = res[:, :2]
        rms = float(np.sqrt((w * (res**2).sum(1)).sum() / w.sum()))
        if best is None or rms < best[1] * (1 - 1e-6) - 1e-12:
            best = (aff, rms)
    return best


def leave_one_out_tre(
    optical_xyz_um: np.ndarray,
    mri_xyz_mm: np.ndarray,
    model: str = "rigid",
    *,
    weights: np.ndarray | None = None,
    mirror: bool | None = None,
    planar: bool | None = None,
    scale_bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Per-pair target registration error of a point fit leaving that pair out.

    For each pair ``n``, fit on all other pairs (:func:`fit_points`, scale 1e-3
    um -> mm) and report ``|| A_{-n}(o_n) - m_n ||`` in mm. For a planar optical
    point set (all z equal, widefield) the error is in-plane (x, y): the z of a
    widefield particle is not observed optically.

    Parameters
    ----------
    optical_xyz_um, mri_xyz_mm : (K, 3) ndarray
        Matched particle positions (optical um, MRI mm in a frame whose z is the
        optical axis, e.g. the MRI grid frame).
    model : {"rigid", "similarity"}
    weights : (K,) ndarray, optional
    mirror : bool or None
        Mirror state of the full fit (``None``: taken from the fit on all pairs).
    planar : bool or None
        Force the planar model; ``None`` detects coplanar optical points.
    scale_bounds : (float, float), optional
        Similarity scale range (see :func:`fit_points`).

    Returns
    -------
    tre : (K,) ndarray
        mm; NaN where the remaining pairs cannot determine a fit.
    """
    o = np.asarray(optical_xyz_um, float)
    m = np.asarray(mri_xyz_mm, float)
    if o.shape != m.shape or o.ndim != 2 or o.shape[1] != 3:
        raise ValueError(f"need two (K, 3) arrays of equal shape, got {o.shape} and {m.shape}")
    w = np.ones(len(o)) if weights is None else np.asarray(weights, float)
    if planar is None:
        planar = bool(np.ptp(o[:, 2]) < 1e-9) if len(o) else True
    need = 3 if planar else 4
    tre = np.full(len(o), np.nan)
    if len(o) < need:
        return tre
    if mirror is None:
        aff, _ = fit_points(o, m, w, model=model, scale=1e-3, planar=planar, scale_bounds=scale_bounds)
        mirror = bool(np.linalg.det(aff[:3, :3]) < 0)
    for n in range(len(o)):
        keep = np.arange(len(o)) != n
        aff, _ = fit_points(o[keep], m[keep], w[keep], model=model, scale=1e-3, mirror=mirror,
                            planar=planar, scale_bounds=scale_bounds)
        err = o[n] @ aff[:3, :3].T + aff[:3, 3] - m[n]
        tre[n] = np.linalg.norm(err[:2] if planar else err)
    return tre
