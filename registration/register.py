"""Co-registration of fluorescence to the 13C MRI from the particles both modalities see.

Steps (each a function below, the machinery in its own module):

1. :func:`_detect`: particles in ``|H|`` and in the optical image (:mod:`.particles`);
2. :func:`_search_space` + :func:`.orientation.search`: match without correspondences over
   every admissible orientation -- all 3D rotations and rotoreflections for a stack
   against a 3D MRI (:mod:`.triplets`), in-plane rotations about the slice normal for a
   2D MRI, the optical axis along each MRI axis for widefield optics (:mod:`.matching`);
3. :func:`_choose`: the most significant candidate (:mod:`.significance`: a chance model of
   the pairs' held-out residuals); a near tie between mirror states is broken by Mattes MI
   (:mod:`.refine`);
4. :func:`_decoy_test`: the same search against two decoys (no true correspondence) must
   stay ``DECOY_MARGIN[mode]`` decades less significant or find clearly fewer pairs, else
   :class:`RegistrationError` names what was searched, the best hypothesis, its decoy score
   and the manifest fields that would help;
5. :func:`_point_fit`: weighted similarity (scale bounded to +-10 %, the optical pixel-size
   factor, reported as ``scale``) or rigid fit (Umeyama 1991, :mod:`.pointfit`);
6. :func:`_mattes`: optional Mattes-MI refinement (Mattes et al., IEEE TMI 22:120 (2003)),
   accepted only if it moves the matched particles by less than the point fit's
   standard error, and run only when that bound is at least 0.1 voxel (else it cannot help);
7. leave-one-out TRE over the matched particles.

All fitting happens in a *search frame*: the MRI grid frame (mm along the array axes,
origin at voxel 0, :func:`grid_frame`), rotated for widefield optics so that its z is the
optical axis. The result is composed with the MRI affine into ``optical_to_mri``
(optical um -> RAS mm), which maps the file's declared um exactly (the fitted pixel-size
factor is inside it). Widefield optics (one plane) is fitted in-plane, then (a 3D MRI) the
tilt of its optical axis is refined and the focal plane placed at the median depth of the
matched MRI particles (:mod:`.tilt`); against a 2D MRI the focal plane is the slice. See
``docs/registration.md``.
"""

from __future__ import annotations

import numpy as np

from .hypotheses import Match
from .orientation import describe, search
from .pointfit import fit_points, leave_one_out_tre
from .problem import Problem, prepare
from .result import Registration, RegistrationError, grid_frame
from .tilt import focal_plane_report, refine_tilt

__all__ = ["Registration", "RegistrationError", "grid_frame", "register"]


def _residuals(aff, o, m, planar):
    """Residuals (mm); planar: normal to the optical axis (the transform's z column)."""
    err = o @ aff[:3, :3].T + aff[:3, 3] - m
    if planar:
        axis = aff[:3, 2] / np.linalg.norm(aff[:3, 2])
        err = err - np.outer(err @ axis, axis)
    return np.linalg.norm(err, axis=1)


def _wrms(res, w):
    return float(np.sqrt((w * res**2).sum() / w.sum())) if len(res) else float("nan")


def _mi_fixed(pb: Problem, z_ref):
    from .refine import fixed_image

    depth = (pb.opts["depth_of_field_um"] or 2 * pb.opts["diameter_um"]) * 1e-3
    return fixed_image(pb.img, pb.vox, pb.planar, z_ref, depth)


def _choose(pb: Problem, cands: list[Match]):
    """Best candidate; a near tie between the two best (same frame, grid z) goes to Mattes MI."""
    chosen = cands[0]
    if len(cands) < 2:
        return chosen, None
    other = cands[1]
    close = len(other.pairs) >= len(chosen.pairs) - 1 and other.rms < 1.2 * chosen.rms
    if not (close and np.allclose(other.frame, chosen.frame) and np.allclose(chosen.frame, np.eye(3))):
        return chosen, None
    from .refine import mattes_value

    fixed, fsp = _mi_fixed(pb, float(np.median(pb.m[chosen.pairs[:, 1], 2])))
    sub = np.ix_([0, 1, 3], [0, 1, 3])
    vals = [mattes_value(fixed, fsp, pb.plane_image if pb.planar else pb.data, pb.spacing,
                         c.transform[sub] if pb.planar else c.transform) for c in (chosen, other)]
    return (chosen, other)[int(np.argmin(vals))], {"mattes_mi": vals}


def _decoys(pb: Problem, rng):
    """Two null point sets with no true correspondence: MRI particles uniform in the MRI
    field, and optical particles uniform in the optical field."""
    extent = np.array(pb.img.shape) * pb.vox
    m_null = pb.m.copy()
    dims = 2 if pb.mode == "slice" else 3
    m_null[:, :dims] = rng.uniform(-pb.vox[:dims] / 2, extent[:dims] - pb.vox[:dims] / 2, (len(pb.m), dims))
    box = (np.array(pb.data.shape) - 1) * pb.spacing
    o_null = rng.uniform(0, 1, pb.o.shape) * box
    if pb.mode != "3d":
        o_null[:, 2] = 0.0
    return [(pb.o, m_null), (o_null, pb.m)]


#: decades of significance by which the chosen match must beat the better of the two decoys
#: (the chance-model route), per search mode. Measured on the 96 cases of the registration
#: sweep (docs/registration.md): a third null search beat the better of two decoys by at most
#: 3.6 decades in 276 in-plane comparisons, and by at most 4.4 decades in 875 of 876 3D ones
#: (6.6 once)
DECOY_MARGIN = {"3d": 6.0, "slice": 4.0, "widefield": 4.0}


def _decoy_best(pb: Problem) -> tuple[float, int]:
    """Highest significance and most pairs that the same search reaches on either decoy."""
    sig, pairs = 0.0, 0
    wo, wm = pb.opt_p.confidence, pb.mri_p.confidence
    for o, m in _decoys(pb, np.random.default_rng(0)):
        for c in search(pb.mode, o, m, wo, wm, pb.space, pb.mirrors):
            sig, pairs = max(sig, c.significance), max(pairs, len(c.pairs))
    return sig, pairs


def distinguishable(significance: float, pairs: int, decoy: tuple[float, int], mode: str = "3d") -> bool:
    """A match is accepted when it beats the best decoy by ``DECOY_MARGIN[mode]`` decades of
    significance (the chance model), or by the pair-count margin ``decoy + max(3, 0.3 decoy)``."""
    return significance >= decoy[0] + DECOY_MARGIN[mode] or pairs >= decoy[1] + max(3.0, 0.3 * decoy[1])


def _decoy_test(pb: Problem, chosen: Match) -> tuple[float, int]:
    """Raise unless the chosen match is :func:`distinguishable` from the decoys."""
    chance = _decoy_best(pb)
    if not distinguishable(chosen.significance, len(chosen.pairs), chance, pb.mode):
        raise RegistrationError(
            f"particle match not distinguishable from chance: {_failure_text(pb, chosen, chance)}",
            _best_payload(pb, chosen, chance))
    return chance


def _world(pb: Problem, match_or_aff) -> np.ndarray:
    """optical um -> RAS mm of a search-frame transform."""
    aff = match_or_aff.transform if isinstance(match_or_aff, Match) else match_or_aff
    frame = match_or_aff.frame if isinstance(match_or_aff, Match) else np.eye(3)
    back = np.eye(4)
    back[:3, :3] = frame.T
    return pb.frame @ back @ aff


def _hints(pb: Problem) -> str:
    fields = []
    if pb.opts["center_mm"] is None:
        fields.append("optics.placement.center_mm")
    if pb.opts["orientation"] is None:
        fields.append("optics.placement.orientation (+ orientation_uncertainty_deg)")
    fields.append("the optical pixel size and optics.particle_diameter_um")
    return "; a manifest field that would help: " + ", ".join(fields)


def _failure_text(pb: Problem, best: Match | None, chance: tuple[float, int]) -> str:
    n = 0 if best is None else len(best.pairs)
    sig = 0.0 if best is None else best.significance
    text = (f"{n} matched pairs ({len(pb.opt_p)} optical / {len(pb.mri_p)} MRI particles), chance "
            f"probability 10^-{sig:.1f}, versus {chance[1]} pairs and 10^-{chance[0]:.1f} for a decoy (needs "
            f"{DECOY_MARGIN[pb.mode]:g} decades or {max(3, int(np.ceil(0.3 * chance[1])))} pairs more); searched "
            f"{describe(pb.mode, pb.space, pb.mirrors)}")
    if pb.opts["center_mm"] is not None:
        text += f" with the centre within {pb.opts['uncertainty_mm']} mm of center_mm"
    if best is not None:
        text += (f"; best hypothesis: {best.label}{' mirrored' if best.mirrored else ''}, "
                 f"{n} pairs, rms {best.rms:.3g} mm")
    return text + _hints(pb)


def _best_payload(pb: Problem, best: Match | None, chance: tuple[float, int]) -> dict | None:
    if best is None:
        return None
    return {"optical_to_mri": _world(pb, best).tolist(), "matched": int(len(best.pairs)),
            "pairs": best.pairs.tolist(), "mirrored": bool(best.mirrored), "label": best.label,
            "rms_mm": float(best.rms), "significance": float(best.significance),
            "decoy_significance": float(chance[0]), "decoy_matches": int(chance[1]),
            "searched": describe(pb.mode, pb.space, pb.mirrors),
            "mri_xyz_mm": pb.mri_p.xyz.tolist(), "optical_xyz_um": pb.opt_p.xyz.tolist()}


def _point_fit(pb: Problem, chosen: Match):
    """Weighted fit on the matched pairs in the search frame; ``(t, weights, rms, o, m, tilt info)``.

    Widefield optics against a 3D MRI: the in-plane fit, then the tilt of the optical axis and
    the focal plane's depth (:func:`.tilt.refine_tilt`)."""
    pairs = chosen.pairs
    m_f = pb.m @ chosen.frame.T
    o, m = pb.o[pairs[:, 0]], m_f[pairs[:, 1]]
    w = pb.opt_p.confidence[pairs[:, 0]] * pb.mri_p.confidence[pairs[:, 1]]
    t_q, _ = fit_points(o, m, w, model=pb.space.model, scale=1e-3, mirror=chosen.mirrored, planar=pb.planar,
                        scale_bounds=pb.space.scale_bounds)
    if pb.mode == "slice":
        t_q[2, 3] = 0.0  # the slice
    tilt = None
    if pb.mode == "widefield":  # tilt of the optical axis; focal plane at the matched particles' median depth
        t_q, tilt = refine_tilt(o, m, w, t_q, model=pb.space.model, scale_bounds=pb.space.scale_bounds)
    return t_q, w, _wrms(_residuals(t_q, o, m, pb.planar), w), o, m, tilt


#: Mattes MI is not run when whatever it could change is below this fraction of an MRI voxel
#: (its acceptance bound, ``accept_tol`` x the point fit's standard error) and the point fit
#: has at least ``MI_MIN_PAIRS`` pairs: it could not change the result by more, and costs most of
#: the registration time of a 3D folder.
MI_USEFUL_VOXELS = 0.1
MI_MIN_PAIRS = 6


def _mattes_useless(pb: Problem, n_pairs: int, rms_points: float) -> dict | None:
    """The ``details["mattes"]`` entry of a skipped refinement, or ``None`` if it can help."""
    tolerance = pb.opts["accept_tol"] * rms_points / np.sqrt(max(n_pairs, 1))
    vox = float(pb.vox[:2].min() if pb.planar else pb.vox.min())
    if n_pairs < MI_MIN_PAIRS or not tolerance < MI_USEFUL_VOXELS * vox:
        return None
    return {"accepted": False, "skipped": True, "tolerance_mm": float(tolerance),
            "reason": (f"not run: the point fit is well determined ({n_pairs} pairs, standard error "
                       f"{tolerance / vox:.3f} voxel); an accepted refinement moves the particles by less "
                       f"than that, below {MI_USEFUL_VOXELS} voxel")}


def _mattes(pb: Problem, t_q, o, m, w, rms_points, frame):
    """Mattes-MI refinement, kept only if it moves the matched particles by less than the
    point fit's standard error (``accept_tol * rms / sqrt(pairs)``); not run when that bound is
    below ``MI_USEFUL_VOXELS`` of a voxel (:func:`_mattes_useless`)."""
    if not np.allclose(frame, np.eye(3)) or abs(t_q[2, 2]) < (1 - 1e-9) * np.linalg.norm(t_q[:3, 2]):
        return t_q, {"accepted": False, "reason": "optical axis not along the MRI k axis: MI not run"}
    skipped = _mattes_useless(pb, len(o), rms_points)
    if skipped is not None:
        return t_q, skipped
    from .refine import mattes_refine  # SimpleITK: loaded only where the refinement runs

    fixed, fsp = _mi_fixed(pb, t_q[2, 3])
    model = pb.opts["model"]
    try:
        if pb.planar:
            sub = np.ix_([0, 1, 3], [0, 1, 3])
            t2, info = mattes_refine(fixed, fsp, pb.plane_image, pb.spacing, t_q[sub], model=model)
            t_ref = t_q.copy()
            t_ref[sub] = t2
        else:
            t_ref, info = mattes_refine(fixed, fsp, pb.data, pb.spacing, t_q, model=model)
    except RuntimeError as err:  # ITK optimizer failure: keep the point fit
        return t_q, {"accepted": False, "reason": str(err).splitlines()[0][:200]}
    rms_ref = _wrms(_residuals(t_ref, o, m, pb.planar), w)
    offset = float(np.sqrt(max(rms_ref**2 - rms_points**2, 0.0)))
    tolerance = pb.opts["accept_tol"] * rms_points / np.sqrt(len(o))
    accept = bool(offset <= tolerance)
    info.update(rms_refined_mm=rms_ref, offset_mm=offset, tolerance_mm=float(tolerance), accepted=accept)
    return (t_ref if accept else t_q), info


def _scale_warnings(scale: float) -> list[str]:
    if abs(scale - 1) > 0.01:
        return [f"fitted optical scale {scale:.4f}: the optical pixel size in the file looks "
                f"{100 * (scale - 1):+.1f} % off (optical_to_mri maps the declared um; check the pixel size)"]
    return []


def register(
    mri_image: np.ndarray,
    mri_affine: np.ndarray,
    noise_sigma: float,
    optical,
    *,
    center_mm=None,
    uncertainty_mm: float = 3.0,
    orientation=None,
    orientation_uncertainty_deg: float = 180.0,
    diameter_um: float = 200.0,
    allow_mirror: bool = True,
    refine: bool = True,
    model: str = "similarity",
    max_scale_error: float = 0.1,
    min_snr: float = 5.0,
    tol_mm=None,
    depth_of_field_um: float | None = None,
    accept_tol: float = 1.0,
    max_particles: int = 400,
) -> Registration:
    """Register an optical image to the 13C MRI from the particles both show, in any orientation.

    Parameters
    ----------
    mri_image, mri_affine, noise_sigma
        Background-free ``|H|`` ``[i, j, k]``, its voxel -> RAS mm affine, per-component noise sigma.
    optical : dualmode.io.OpticalImage
        ``data[x, y, z]`` (widefield ``z = 1`` or a stack) with ``spacing_um``.
    center_mm, uncertainty_mm : optional
        Coarse RAS position of the optical data's centre (middle of the field; for a stack
        the middle in depth; widefield: on the focal plane) and the radius searched around it.
    orientation, orientation_uncertainty_deg : optional
        Coarse orientation (3x3, the optical x, y, z axes as columns in MRI RAS) and the
        angle searched around it (with its handedness); ``None``/180: any orientation.
    diameter_um : float
        Particle diameter (optical detection scale).
    allow_mirror, refine : bool
        Also test mirrored optics (any reflection); Mattes-MI refinement (Mattes et al. 2003),
        kept if it moves the particles by < ``accept_tol`` x the point fit's standard error (skipped below 0.1 voxel).
    model : {"similarity", "rigid", "affine"}
        Point fit: similarity fits the optical pixel-size factor within ``1 +- max_scale_error``
        (reported as ``scale``); ``"affine"``: similarity points, affine MI refinement.
    tol_mm : float or 3 floats, optional
        Match tolerance per MRI array axis; default ``max(0.6 voxel, 0.1 mm)`` per axis.
    min_snr, depth_of_field_um, max_particles, accept_tol, max_scale_error
        Detection threshold; widefield MI slab (2 diameters); particles per side; see refine, model.

    Returns
    -------
    Registration

    Raises
    ------
    RegistrationError
        Too few particles, or no match clearly better than a decoy (``.best``: the best rejected).

    References
    ----------
    RANSAC: Fischler & Bolles, CACM 24:381 (1981); point fit: Umeyama, IEEE TPAMI 13:376 (1991).

    Examples
    --------
    >>> from dualmode.simulate import make_pair
    >>> pair = make_pair(0, n_particles=80)
    >>> reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical,
    ...                center_mm=pair.center_mm, refine=False)
    >>> reg.matched >= 6
    True
    """
    opts = {k: v for k, v in locals().items() if k not in ("mri_image", "mri_affine", "optical", "refine")}
    pb = prepare(mri_image, mri_affine, noise_sigma, optical, opts)
    cands = search(pb.mode, pb.o, pb.m, pb.opt_p.confidence, pb.mri_p.confidence, pb.space, pb.mirrors)
    best = cands[0] if cands else None
    if best is None or len(best.pairs) < 3:
        raise RegistrationError(f"no consistent particle match: {_failure_text(pb, best, (0.0, 0))}",
                                _best_payload(pb, best, (0.0, 0)))
    chosen, tie_break = _choose(pb, cands)
    chance = _decoy_test(pb, chosen)
    return _finish(pb, chosen, cands, chance, tie_break, refine)


def _finish(pb: Problem, chosen: Match, cands, chance, tie_break, refine) -> Registration:
    t_q, w, rms_points, o, m, tilt = _point_fit(pb, chosen)
    method = f"particles+{pb.space.model}"
    details = {
        "tol_mm": pb.space.tol.tolist(), "planar": pb.planar, "mode": pb.mode, "n_mri": len(pb.mri_p),
        "n_optical": len(pb.opt_p), "significance": float(chosen.significance),
        "decoy_significance": float(chance[0]), "decoy_matches": int(chance[1]), "hypotheses": int(chosen.hypotheses),
        "searched": describe(pb.mode, pb.space, pb.mirrors), "chosen": chosen.label,
        "candidates": [{"label": c.label, "mirrored": c.mirrored, "matched": int(len(c.pairs)), "rms_mm": c.rms}
                       for c in cands[:6]],
        "rms_points_mm": rms_points,
    }
    if tie_break:
        details["mirror_tie_break"] = tie_break
    if refine:
        t_q, details["mattes"] = _mattes(pb, t_q, o, m, w, rms_points, chosen.frame)
        if details["mattes"].get("accepted"):
            method += "+mattes-mi"
    residuals = _residuals(t_q, o, m, pb.planar)
    tre = leave_one_out_tre(o, m, pb.space.model, weights=w, mirror=chosen.mirrored, planar=pb.planar,
                            scale_bounds=pb.space.scale_bounds)
    tre_med = float(np.nanmedian(tre)) if np.any(np.isfinite(tre)) else None
    details["tre_loo_vox"] = None if tre_med is None else tre_med / float(pb.vox.min())
    details["tre_loo_per_pair_mm"] = [None if not np.isfinite(t) else float(t) for t in tre]
    if pb.mode == "slice" and pb.data.shape[2] > 1:  # a z-stack against a 2D slice: the slice cuts its middle
        t_q[2, 3] -= t_q[2, 2] * float(np.median(pb.opt_p.xyz[:, 2]))
    o2m = _world(pb, _as_match(chosen, t_q))
    scale = float(np.cbrt(abs(np.linalg.det(o2m[:3, :3])))) / 1e-3
    details["scale"] = scale
    if tilt is not None:
        details["widefield"] = focal_plane_report(o2m, _world(pb, _as_match(chosen, np.eye(4)))[:3, :3], tilt,
                                                  (np.array(pb.data.shape) - 1) / 2 * pb.spacing)
    return Registration(
        optical_to_mri=o2m, method=method, metric=_wrms(residuals, w), matched=int(len(chosen.pairs)),
        pairs=chosen.pairs, residuals_mm=residuals, mirrored=bool(np.linalg.det(o2m[:3, :3]) < 0),
        mri_particles=pb.mri_p, optical_particles=pb.opt_p, tre_loo_mm=tre_med, details=details,
        scale=scale, warnings=_scale_warnings(scale))


def _as_match(chosen: Match, t_q) -> Match:
    return Match(t_q, chosen.pairs, chosen.residuals, chosen.score, chosen.rms, chosen.mirrored,
                 chosen.hypotheses, chosen.label, chosen.frame, chosen.significance)
