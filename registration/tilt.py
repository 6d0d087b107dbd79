"""Widefield optics against a 3D MRI: refine the tilt of the optical axis and place the focal plane.

The axis search (:mod:`.orientation`) puts the optical axis along an MRI array axis and
matches in-plane. A real optical axis is a few degrees off any array axis; a widefield image
then sees the particles projected along the *tilted* axis: in-plane positions shift with
depth (``z sin(theta)``) and foreshorten (``cos(theta)``). Both are observable from the
matched pairs, whose MRI positions are 3D.

Model (a scaled orthographic camera): each matched MRI particle ``m_n`` is
``c R (x_n, y_n, z_n) + t`` with the optical ``(x_n, y_n)`` observed and the depth ``z_n``
unknown, so the observation is the in-plane part ``[R^T (m_n - t)]_{xy} = c (x_n, y_n)``. The
weighted least-squares fit of the in-plane residuals over ``R = R_0 exp([omega]_x)``
(``R_0`` the in-plane fit, with its handedness), ``c`` (within the scale bounds) and the
in-plane offset is solved by trust-region least squares (``scipy.optimize.least_squares``).
The tilt is observable through the depth-dependent shift ``z sin(theta)`` and the
foreshortening ``cos(theta)`` of the in-plane positions, i.e. only as far as the matched
particles spread in depth: it is *applied* only when it lowers the in-plane residuals
significantly (F-test of the two extra parameters, ``p < TILT_P``); the fitted tilt and its
p-value are always reported. The focal plane (optical ``z = 0``)
is then placed at the weighted median depth of the matched MRI particles along the fitted
optical axis (where a user focuses: the particle layer); their spread is reported.

References: R. Hartley, A. Zisserman, *Multiple View Geometry*, 2nd ed., sec. 6.3 (affine and
scaled orthographic cameras), Cambridge University Press (2004); S. Umeyama, IEEE TPAMI
13:376 (1991) (the in-plane start).
"""

from __future__ import annotations

import numpy as np

#: a fitted tilt beyond this is not a refinement of the axis search (the wrong axis): rejected
MAX_TILT_DEG = 25.0
#: the tilt is applied only if it lowers the in-plane residuals significantly (F-test, 2 extra
#: parameters): with the particles in a thin layer normal to the axis it is barely observable
TILT_P = 0.02


def _f_test(rms0: float, rms1: float, k: int) -> float:
    """p-value of the 2 tilt parameters (nested least squares: 2k residuals, 6 parameters)."""
    from scipy.special import fdtrc

    dof = 2 * k - 6
    if dof <= 0:
        return 1.0
    if rms1 <= 0:
        return 0.0 if rms0 > 0 else 1.0
    f = ((rms0**2 - rms1**2) * k / 2) / (rms1**2 * k / dof)
    return float(fdtrc(2, dof, max(f, 0.0)))


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    c = np.cumsum(w[order])
    return float(x[order][np.searchsorted(c, 0.5 * c[-1])])


def refine_tilt(o: np.ndarray, m: np.ndarray, w: np.ndarray, start: np.ndarray, *, model: str = "similarity",
                scale_bounds=None, iterations: int = 50) -> tuple[np.ndarray, dict]:
    """Tilted orthographic fit of widefield pairs; ``(affine, info)`` in the search frame.

    Parameters
    ----------
    o : (K, 3) ndarray
        Optical particles (um; ``z`` ignored: widefield).
    m : (K, 3) ndarray
        Matched MRI particles in the search frame (mm; ``z`` along the searched optical axis).
    w : (K,) ndarray
        Pair weights.
    start : (4, 4) ndarray
        The in-plane fit (optical axis along the frame's z).
    model, scale_bounds
        As :func:`.pointfit.fit_points` (the scale factor stays within its bounds).

    Returns
    -------
    affine : (4, 4) ndarray
        Optical um -> search frame mm, focal plane (optical ``z = 0``) at the median depth.
    info : dict
        ``tilt_deg`` (angle between the applied and the searched optical axis),
        ``tilt_fitted_deg``, ``tilt_p_value`` (F-test of the tilt against no tilt; applied when
        below ``TILT_P`` and not above ``MAX_TILT_DEG``), ``accepted``,
        ``focal_depth_spread_mm`` (weighted median distance of the matched particles from the
        focal plane), ``rms_in_plane_mm`` before and after.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.spatial.transform import Rotation
    >>> rng = np.random.default_rng(0)
    >>> xyz = np.c_[rng.uniform(0, 4000, (25, 2)), rng.uniform(-300, 300, 25)]
    >>> rot = Rotation.from_euler("x", 8, degrees=True).as_matrix()
    >>> m = xyz @ rot.T * 1e-3
    >>> start = np.diag([1e-3, 1e-3, 1e-3, 1.0])
    >>> aff, info = refine_tilt(np.c_[xyz[:, :2], np.zeros(25)], m, np.ones(25), start)
    >>> round(info["tilt_deg"], 2)
    8.0
    """
    o = np.c_[np.asarray(o, float)[:, :2], np.zeros(len(o))]
    m, w = np.asarray(m, float), np.asarray(w, float)
    rms0 = _rms_in_plane(start, o, m, w)
    if len(o) < 4:
        return _place_focal(start, m, w), {"accepted": False, "reason": "fewer than 4 pairs", "tilt_deg": 0.0}
    aff = _fit(o, m, w, start, model, scale_bounds)
    axis0 = start[:3, 2] / np.linalg.norm(start[:3, 2])
    axis = aff[:3, 2] / np.linalg.norm(aff[:3, 2])
    tilt = float(np.degrees(np.arccos(np.clip(abs(axis @ axis0), -1.0, 1.0))))
    rms1 = _rms_in_plane(aff, o, m, w)
    p_value = _f_test(rms0, rms1, len(o))
    info = {"tilt_deg": tilt, "tilt_fitted_deg": tilt, "tilt_p_value": p_value, "rms_in_plane_mm": [rms0, rms1],
            "fitted_axis": axis,
            "accepted": tilt <= MAX_TILT_DEG and p_value < TILT_P}
    if tilt > MAX_TILT_DEG:
        info["reason"] = f"fitted tilt {tilt:.1f} deg > {MAX_TILT_DEG:g} deg: kept the axis-aligned fit"
    elif p_value >= TILT_P:
        info["reason"] = (f"fitted tilt {tilt:.1f} deg does not lower the in-plane residuals significantly "
                          f"(F-test p = {p_value:.2g}): kept the axis-aligned fit")
    if not info["accepted"]:
        aff, info["tilt_deg"] = start, 0.0
    aff = _place_focal(aff, m, w)
    depth = _to_optical(aff, m)[:, 2] * float(np.cbrt(abs(np.linalg.det(aff[:3, :3]))))  # mm
    info["focal_depth_spread_mm"] = _weighted_median(np.abs(depth), w)
    return aff, info


def _fit(o, m, w, start, model, scale_bounds) -> np.ndarray:
    """Least-squares scaled orthographic fit from ``start`` (see the module docstring)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    c0 = float(np.cbrt(abs(np.linalg.det(start[:3, :3]))))
    r0 = start[:3, :3] / c0
    sw = np.sqrt(w / w.sum())[:, None]

    def rotation(p):
        return r0 @ Rotation.from_rotvec(p[:3]).as_matrix()

    def residual(p):
        q = m @ rotation(p)  # rows: R^T m
        return (sw * (q[:, :2] - np.exp(p[3]) * o[:, :2] - p[4:6])).ravel()

    q0 = (start[:3, 3] @ r0)[:2]  # R^T t of the start
    x0 = np.r_[0.0, 0.0, 0.0, np.log(c0), q0]
    lo, hi = np.full(6, -np.inf), np.full(6, np.inf)
    if model != "rigid" and scale_bounds is not None:
        lo[3], hi[3] = np.log(scale_bounds[0]), np.log(scale_bounds[1])
        x0[3] = np.clip(x0[3], lo[3] + 1e-12, hi[3] - 1e-12)
    else:
        lo[3], hi[3] = x0[3] - 1e-12, x0[3] + 1e-12
    p = least_squares(residual, x0, bounds=(lo, hi), x_scale=np.r_[0.01, 0.01, 0.01, 0.01, 0.01, 0.01]).x
    out = np.eye(4)
    rot = rotation(p)
    out[:3, :3] = np.exp(p[3]) * rot
    out[:3, 3] = rot[:, :2] @ p[4:6] + rot[:, 2] * (start[:3, 3] @ r0)[2]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


def _to_optical(aff: np.ndarray, m: np.ndarray) -> np.ndarray:
    """MRI points in optical um under ``aff``."""
    return (m - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T


def _rms_in_plane(aff: np.ndarray, o: np.ndarray, m: np.ndarray, w: np.ndarray) -> float:
    q = _to_optical(aff, m)
    c = float(np.cbrt(abs(np.linalg.det(aff[:3, :3]))))
    r2 = ((q[:, :2] - o[:, :2]) ** 2).sum(1) * c**2
    return float(np.sqrt((w * r2).sum() / w.sum()))


def _place_focal(aff: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Shift ``aff`` along its optical axis so that optical ``z = 0`` is at the median depth."""
    out = np.array(aff, float)
    depth_um = _weighted_median(_to_optical(out, m)[:, 2], w)
    out[:3, 3] += out[:3, 2] * depth_um
    return out


def focal_plane_report(optical_to_mri: np.ndarray, searched_frame: np.ndarray, info: dict,
                       optical_center_um: np.ndarray) -> dict:
    """The widefield geometry in MRI RAS for ``registration.json``.

    ``optical_axis_ras`` (unit, the optical z), ``searched_axis_ras`` (the MRI axis the search
    started from), ``tilt_deg`` between them (0 when the fitted tilt was not applied),
    ``fitted_axis_ras``, ``tilt_fitted_deg`` and ``tilt_p_value`` (the fit and its F-test),
    ``focal_plane_center_mm`` (RAS of the image centre on the focal plane),
    ``focal_plane_depth_mm`` (its position along the optical axis, ``axis . center``) and
    ``focal_depth_spread_mm`` (median distance of the matched particles from the focal plane).
    """
    axis = optical_to_mri[:3, 2] / np.linalg.norm(optical_to_mri[:3, 2])
    searched = searched_frame[:3, 2] / np.linalg.norm(searched_frame[:3, 2])
    centre = optical_to_mri[:3, :3] @ np.r_[np.asarray(optical_center_um, float)[:2], 0.0] + optical_to_mri[:3, 3]
    return {"optical_axis_ras": axis.tolist(), "searched_axis_ras": (searched * np.sign(searched @ axis)).tolist(),
            "tilt_deg": float(info.get("tilt_deg", 0.0)), "tilt_accepted": bool(info.get("accepted", False)),
            "tilt_fitted_deg": info.get("tilt_fitted_deg"), "tilt_p_value": info.get("tilt_p_value"),
            "fitted_axis_ras": (None if info.get("fitted_axis") is None else
                                _unit(searched_frame @ info["fitted_axis"]).tolist()),
            "focal_plane_center_mm": centre.tolist(), "focal_plane_depth_mm": float(axis @ centre),
            "focal_depth_spread_mm": info.get("focal_depth_spread_mm"),
            **({"tilt_note": info["reason"]} if "reason" in info else {})}
