"""Co-registration of fluorescence to the 13C MRI from the particles both modalities see.

Steps (each in its own module):

1. detect particles in ``|H|`` and in the optical image (:mod:`.particles`);
2. match them without correspondences by RANSAC over distance-compatible pairs
   with the mirror hypothesis, starting from the coarse placement (:mod:`.matching`);
   choose the mirror state by matched count, then residual, then Mattes MI;
3. fit rigid (optionally similarity) weighted by the particles' confidence
   (deep/blurred optical particles count less; :mod:`.pointfit`);
4. optionally refine by Mattes MI on the MRI grid (:mod:`.refine`), accepted only
   if the matched-particle residual does not grow beyond the point fit's standard error;
5. report leave-one-out TRE over the matched particles.

All fitting happens in the MRI *grid frame* (mm along the array axes, origin at
voxel 0), whose z is the slice axis, assumed parallel to the optical axis; the
result is composed with the MRI affine into ``optical_to_mri`` (um -> RAS mm).
Widefield optics (one plane) is fitted in-plane; its z is the median z of the
matched MRI particles (a 3D MRI) or the slice (a 2D MRI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualmode.conventions import apply_affine, voxel_sizes

from .matching import match_particles
from .particles import Particles, detect_mri_particles, detect_optical_particles
from .pointfit import fit_points, leave_one_out_tre


class RegistrationError(ValueError):
    """Registration impossible (too few particles or no consistent match)."""


@dataclass
class Registration:
    """Result of :func:`register`.

    ``optical_to_mri`` maps optical um to MRI RAS mm. ``metric`` is the weighted
    RMS residual (mm, in-plane for widefield) of the matched particles under the
    final transform. ``pairs[:, 0]`` index ``optical_particles``, ``pairs[:, 1]``
    ``mri_particles``.
    """

    optical_to_mri: np.ndarray
    method: str
    metric: float
    matched: int
    pairs: np.ndarray
    residuals_mm: np.ndarray
    mirrored: bool
    mri_particles: Particles
    optical_particles: Particles
    tre_loo_mm: float | None
    details: dict = field(default_factory=dict)


def grid_frame(affine: np.ndarray) -> np.ndarray:
    """4x4 mapping MRI grid-frame mm (along the array axes, origin voxel 0) to RAS mm."""
    affine = np.asarray(affine, float)
    return affine @ np.diag([*(1.0 / voxel_sizes(affine)), 1.0])


def _residuals(aff, o, m, planar):
    err = o @ aff[:3, :3].T + aff[:3, 3] - m
    return np.linalg.norm(err[:, :2] if planar else err, axis=1)


def _wrms(res, w):
    return float(np.sqrt((w * res**2).sum() / w.sum())) if len(res) else float("nan")


def register(
    mri_image: np.ndarray,
    mri_affine: np.ndarray,
    noise_sigma: float,
    optical,
    *,
    center_mm=None,
    uncertainty_mm: float = 3.0,
    diameter_um: float = 200.0,
    allow_mirror: bool = True,
    refine: bool = True,
    model: str = "rigid",
    min_snr: float = 5.0,
    tol_mm: float | None = None,
    depth_of_field_um: float | None = None,
    accept_tol: float = 1.0,
    max_particles: int = 400,
) -> Registration:
    """Register an optical image to the 13C MRI from the particles both show.

    Parameters
    ----------
    mri_image : (I, J, K) ndarray
        Background-free ``|H|`` (``K = 1`` for 2D).
    mri_affine : (4, 4) ndarray
        MRI voxel -> RAS mm.
    noise_sigma : float
        Per-component noise sigma of ``H``.
    optical : dualmode.io.OpticalImage
        ``data[x, y, z]`` (widefield ``z = 1`` or a stack) with ``spacing_um``.
    center_mm : sequence of 3 float, optional
        Coarse RAS position of the optical image centre; ``None`` searches the whole MRI field.
    uncertainty_mm : float
        In-plane radius around ``center_mm`` searched for the optical centre.
    diameter_um : float
        Particle diameter (sets the optical detection scale).
    allow_mirror : bool
        Also test mirrored optics (det -1).
    refine : bool
        Mattes-MI refinement after the point fit (accepted only if it keeps the point residual).
    model : {"rigid", "similarity", "affine"}
        Final point-fit and MI-refinement model (matching assumes the nominal pixel size);
        ``"affine"`` fits a similarity to the points and an affine in the MI refinement.
    tol_mm : float, optional
        Match tolerance; default ``max(0.6 * in-plane voxel, 0.1 mm)``.
    depth_of_field_um : float, optional
        Widefield against a 3D MRI: slab of the MRI projected for the MI refinement
        (default: two particle diameters).
    accept_tol : float
        The MI refinement is kept only if the offset it adds to the matched particles,
        ``sqrt(rms_refined^2 - rms_points^2)``, is at most ``accept_tol`` times the point fit's
        standard error ``rms_points / sqrt(pairs)`` (both RMS reported in ``details``).
    max_particles : int
        Keep at most this many particles per modality (highest SNR) for matching.

    Notes
    -----
    A 2D MRI (one slice) is matched in-plane; a z-stack against it is projected, and
    the slice is placed through the stack's median particle depth.

    Returns
    -------
    Registration

    Raises
    ------
    RegistrationError
        Fewer than 3 particles in either modality or fewer than 3 matched pairs.
    """
    img = np.asarray(mri_image, float)
    aff = np.asarray(mri_affine, float)
    if img.ndim != 3 or aff.shape != (4, 4):
        raise ValueError(f"need an [i, j, k] MRI image and a 4x4 affine, got {img.shape}, {aff.shape}")
    data = np.asarray(optical.data, float)
    spacing = np.asarray(optical.spacing_um, float)
    if data.ndim != 3:
        raise ValueError(f"optical data must be [x, y, z], got {data.shape}")
    if model not in ("rigid", "similarity", "affine"):
        raise ValueError(f"model must be 'rigid', 'similarity' or 'affine', got {model!r}")
    point_model = "similarity" if model == "affine" else model
    vox = voxel_sizes(aff)
    optical_planar = data.shape[2] == 1
    planar = optical_planar or img.shape[2] == 1  # in-plane fit (widefield, or a 2D MRI slice)
    plane_image = data[:, :, 0] if optical_planar else data.max(axis=2)  # MIP of a stack for MI
    tol = float(tol_mm) if tol_mm is not None else max(0.6 * vox[:2].max(), 0.1)

    mri_p = detect_mri_particles(img, aff, noise_sigma, min_snr=min_snr)
    opt_p = detect_optical_particles(data, spacing, diameter_um=diameter_um, min_snr=min_snr)
    if len(mri_p) < 3 or len(opt_p) < 3:
        raise RegistrationError(
            f"too few particles to register: {len(mri_p)} in the MRI, {len(opt_p)} in the optical "
            f"image (need >= 3 in each; check min_snr={min_snr}, diameter_um={diameter_um})")

    keep_m = np.argsort(-mri_p.snr, kind="stable")[:max_particles]
    keep_o = np.argsort(-opt_p.snr * opt_p.confidence, kind="stable")[:max_particles]
    mri_p, opt_p = mri_p.subset(np.sort(keep_m)), opt_p.subset(np.sort(keep_o))
    frame = grid_frame(aff)
    to_grid = np.linalg.inv(frame)
    m = apply_affine(to_grid, mri_p.xyz)
    o = opt_p.xyz.copy()
    stack_mid_um = 0.0 if optical_planar else float(np.median(o[:, 2]))
    if planar:
        o[:, 2] = 0.0
    o_centre = (np.array(data.shape) - 1) / 2 * spacing
    if planar:
        o_centre[2] = 0.0
    if center_mm is None:
        centre_q = (np.array(img.shape) - 1) / 2 * vox
        unc = np.inf
    else:
        centre_q = apply_affine(to_grid, np.asarray(center_mm, float))
        unc = float(uncertainty_mm)
    wo, wm = opt_p.confidence, mri_p.confidence
    # mirror states in the grid frame; a left-handed MRI affine swaps what "mirrored" means in world
    world_flip = bool(np.linalg.det(frame[:3, :3]) < 0)
    mirrors = (False, True) if allow_mirror else (world_flip,)
    matches = match_particles(o, m, wo=wo, wm=wm, tol=tol, center=centre_q, optical_center=o_centre,
                              uncertainty=unc, mirrors=mirrors, planar=planar)
    cands = [c for c in matches.values() if c is not None and len(c.pairs) >= 3]
    if not cands:
        best = max((len(c.pairs) for c in matches.values() if c is not None), default=0)
        raise RegistrationError(
            f"no consistent particle match: {len(opt_p)} optical and {len(mri_p)} MRI particles, "
            f"best hypothesis matched {best} (< 3) within {tol:.3g} mm; check center_mm "
            f"(+- {uncertainty_mm} mm), pixel size and diameter_um")
    cands.sort(key=lambda c: (len(c.pairs), c.score, -c.rms), reverse=True)
    chosen = cands[0]
    tie_break = None
    if len(cands) == 2 and len(cands[1].pairs) >= len(chosen.pairs) - 1 and cands[1].rms < 1.2 * chosen.rms:
        from .refine import fixed_image, mattes_value

        z_ref = float(np.median(m[chosen.pairs[:, 1], 2]))
        fixed, fsp = fixed_image(img, vox, planar, z_ref, (depth_of_field_um or 2 * diameter_um) * 1e-3)
        vals = []
        for c in cands:
            t = c.transform if not planar else c.transform[np.ix_([0, 1, 3], [0, 1, 3])]
            vals.append(mattes_value(fixed, fsp, data if not planar else plane_image, spacing, t))
        chosen = cands[int(np.argmin(vals))]
        tie_break = {"mattes_mi": vals}
    # significance: the same search against decoys (as many MRI particles, uniformly random
    # in the field, no true correspondence) must find clearly fewer pairs
    rng = np.random.default_rng(0)
    extent = np.array(img.shape) * vox
    chance = 0
    for _ in range(2):
        decoy = m.copy()
        decoy[:, :2] = rng.uniform(-vox[:2] / 2, extent[:2] - vox[:2] / 2, (len(m), 2))
        null = match_particles(o, decoy, wo=wo, wm=wm, tol=tol, center=centre_q, optical_center=o_centre,
                               uncertainty=unc, mirrors=mirrors, planar=planar)
        chance = max(chance, max((len(c.pairs) for c in null.values() if c is not None), default=0))
    if len(chosen.pairs) < chance + max(3.0, 0.3 * chance):
        raise RegistrationError(
            f"particle match not distinguishable from chance: {len(chosen.pairs)} matched pairs "
            f"({len(opt_p)} optical / {len(mri_p)} MRI particles) versus {chance} for a decoy; "
            f"check center_mm (+- {uncertainty_mm} mm), pixel size and diameter_um")

    pairs = chosen.pairs
    w = wo[pairs[:, 0]] * wm[pairs[:, 1]]
    t_q, _ = fit_points(o[pairs[:, 0]], m[pairs[:, 1]], w, model=point_model, scale=1e-3,
                        mirror=chosen.mirrored, planar=planar)
    if planar:  # z: the matched MRI particles (3D MRI) or the slice (2D MRI)
        t_q[2, 3] = float(np.median(m[pairs[:, 1], 2])) if img.shape[2] > 1 else 0.0
    res_points = _residuals(t_q, o[pairs[:, 0]], m[pairs[:, 1]], planar)
    rms_points = _wrms(res_points, w)
    method = f"particles+{point_model}"
    details = {
        "tol_mm": tol, "planar": planar, "n_mri": len(mri_p), "n_optical": len(opt_p),
        "decoy_matches": int(chance), "hypotheses": int(chosen.hypotheses),
        "candidates": [{"mirrored": c.mirrored, "matched": int(len(c.pairs)), "rms_mm": c.rms}
                       for c in cands],
        "rms_points_mm": rms_points,
    }
    if tie_break:
        details["mirror_tie_break"] = tie_break
    if refine:
        from .refine import fixed_image, mattes_refine

        z_ref = t_q[2, 3]
        fixed, fsp = fixed_image(img, vox, planar, z_ref, (depth_of_field_um or 2 * diameter_um) * 1e-3)
        try:
            if planar:
                sub = np.ix_([0, 1, 3], [0, 1, 3])
                t2, info = mattes_refine(fixed, fsp, plane_image, spacing, t_q[sub], model=model)
                t_ref = t_q.copy()
                t_ref[sub] = t2
            else:
                t_ref, info = mattes_refine(fixed, fsp, data, spacing, t_q, model=model)
            res_ref = _residuals(t_ref, o[pairs[:, 0]], m[pairs[:, 1]], planar)
            rms_ref = _wrms(res_ref, w)
            # the systematic offset the refinement adds to the matched particles must stay within
            # the standard error of the point fit itself (rms / sqrt(pairs))
            offset = float(np.sqrt(max(rms_ref**2 - rms_points**2, 0.0)))
            tolerance = accept_tol * rms_points / np.sqrt(len(pairs))
            accept = bool(offset <= tolerance)
            info.update(rms_refined_mm=rms_ref, offset_mm=offset, tolerance_mm=float(tolerance), accepted=accept)
        except RuntimeError as err:  # ITK optimizer failure: keep the point fit
            accept, info = False, {"accepted": False, "reason": str(err).splitlines()[0][:200]}
        details["mattes"] = info
        if accept:
            t_q = t_ref
            method += "+mattes-mi"
    residuals = _residuals(t_q, o[pairs[:, 0]], m[pairs[:, 1]], planar)
    tre = leave_one_out_tre(o[pairs[:, 0]], m[pairs[:, 1]], point_model, weights=w, mirror=chosen.mirrored,
                            planar=planar)
    tre_med = float(np.nanmedian(tre)) if np.any(np.isfinite(tre)) else None
    details["tre_loo_vox"] = None if tre_med is None else tre_med / float(vox[:2].min())
    details["tre_loo_per_pair_mm"] = [None if not np.isfinite(t) else float(t) for t in tre]
    if not optical_planar and planar:  # a z-stack against a 2D slice: the slice cuts the stack middle
        t_q[2, 3] -= t_q[2, 2] * stack_mid_um
    o2m = frame @ t_q
    return Registration(
        optical_to_mri=o2m, method=method, metric=_wrms(residuals, w), matched=int(len(pairs)),
        pairs=pairs, residuals_mm=residuals, mirrored=bool(np.linalg.det(o2m[:3, :3]) < 0),
        mri_particles=mri_p, optical_particles=opt_p, tre_loo_mm=tre_med, details=details)
