"""``dualmode plan``: choose the k-space samples of an optics-guided acquisition.

The optics locates the particles; mapped onto the MRI grid by a registration (from an
earlier full acquisition of the same sample, ``registration.json`` / ``transform.tfm``)
or, coarsely, by the stage placement, they give the support ``S`` the 13C image can
occupy (particle discs dilated by the registration uncertainty). Greedy D-optimal
design (:func:`dualmode.recon.optics_prior.choose_kspace_samples`) then picks the
samples, most informative first, which is the order to acquire them in: with a constant
flip angle every excitation spends polarization (``cos alpha``), so early samples carry
the most signal. A few extra *check* samples, drawn away from the design, let the
reconstruction test the support (:mod:`dualmode.recon.planned`).

Outputs (``OUT/``): ``plan.json`` (coordinates in cycles/FOV in acquisition order, the
design order, the support, expected noise amplification), ``plan_trajectory.h5`` (an
ISMRMRD file with one single-point readout per sample: the trajectory a sequence can
play), ``plan_encsteps.txt`` (Bruker-style ``PVM_EncSteps`` lists of the phase-encode
steps, for pure phase encoding or line subsets).
"""

from __future__ import annotations

import json
import os

import numpy as np

from dualmode.conventions import apply_affine, mri_affine

PLAN_FORMAT = "dualmode.plan/1"
DEPLETION = 0.25  # fraction of the polarization one shot spends (cos(alpha)^n = 0.75)


def optical_particles_on_grid(optics, optical_to_mri, affine, *, diameter_um: float = 200.0):
    """Optical particle centres (detected in ``optics``) in MRI voxel indices ``(P, 3)``."""
    from dualmode.registration.particles import detect_optical_particles

    parts = detect_optical_particles(optics.data, optics.spacing_um, diameter_um=diameter_um)
    return apply_affine(np.linalg.inv(affine), apply_affine(np.asarray(optical_to_mri, float), parts.xyz))


def support_from_particles(vox: np.ndarray, matrix, voxel_mm, *, diameter_um: float, dilation_vox: float):
    """Support mask: discs (balls in 3D) of the particle radius plus ``dilation_vox`` around each centre.

    Particles mapping outside the grid are dropped (returned count ``outside``).
    """
    matrix = tuple(int(n) for n in matrix)
    nd = 2 if matrix[2] == 1 else 3
    grid = np.meshgrid(*[np.arange(n) for n in matrix], indexing="ij")
    support = np.zeros(matrix, bool)
    inside = np.all((vox[:, :nd] > -0.5) & (vox[:, :nd] < np.array(matrix[:nd]) - 0.5), axis=1)
    for c in vox[inside]:
        d2 = sum(((grid[a] - c[a]) * voxel_mm[a]) ** 2 for a in range(nd))
        radius = diameter_um / 2000.0 + dilation_vox * float(np.mean(voxel_mm[:nd]))
        support |= d2 <= radius**2
    return support, int((~inside).sum())


def _check_coords(chosen: np.ndarray, matrix, n_check: int, seed: int) -> np.ndarray:
    """``n_check`` random Cartesian samples not in ``chosen``, density ``(1 - |k|/k_max)^2``."""
    from dualmode.recon.optics_prior import cartesian_coords

    cand = cartesian_coords(matrix)
    taken = {tuple(c) for c in np.rint(chosen).astype(int)}
    free = np.array([tuple(c) not in taken for c in np.rint(cand).astype(int)])
    cand = cand[free]
    radius = np.sqrt(np.sum((cand / (np.array(matrix[:cand.shape[1]]) / 2.0)) ** 2, axis=1))
    p = np.clip(1.0 - radius / radius.max(), 1e-3, None) ** 2
    pick = np.random.default_rng(seed).choice(len(cand), size=n_check, replace=False, p=p / p.sum())
    return cand[pick]


def sample_budget(n_full: int, s: int, *, n_samples=None, acceleration=None) -> tuple[int, int]:
    """``(n_fit, n_check)`` from a budget: ``n_samples`` or ``acceleration`` (``n_full / R``) in total,
    10 % (at least 8) of it check samples. Raises ValueError when the fit would have fewer samples
    than the support has unknowns (plus two)."""
    if n_samples is None:
        n_samples = int(round(n_full / float(acceleration)))
    n_check = max(8, int(round(0.1 * n_samples)))
    n_fit = n_samples - n_check
    if n_fit < s + 2:
        raise ValueError(f"a budget of {n_samples} samples ({n_fit} to fit, {n_check} to check) cannot determine "
                         f"{s} support voxels: lower the acceleration to at most "
                         f"{n_full / (s + 2 + n_check):.1f} or shrink the support")
    return n_fit, n_check


def _design(support, n_fit, max_amplification):
    """Greedy samples; with a target, the shortest prefix whose noise amplification meets it."""
    from dualmode.recon.optics_prior import choose_kspace_samples

    s = int(support.sum())
    coords = choose_kspace_samples(support, n_fit, method="greedy")
    if max_amplification is None:
        return coords
    for m in sorted({int(np.ceil(c * s)) for c in (1.1, 1.2, 1.35, 1.5, 1.75, 2, 2.5, 3, 4)} | {n_fit}):
        if s + 2 <= m <= n_fit and design_quality(coords[:m], support)["noise_amplification"] <= max_amplification:
            return coords[:m]
    return coords


def design_quality(coords, support) -> dict:
    """Condition number of ``A_S`` and noise amplification ``sqrt(m * mean diag (A^H A)^-1)`` (1: orthogonal)."""
    from dualmode.recon.optics_prior import fourier_matrix

    sv = np.linalg.svd(fourier_matrix(coords, support), compute_uv=False)
    return {"condition_number": float(sv[0] / sv[-1]),
            "noise_amplification": float(np.sqrt(len(coords) * np.mean(1.0 / sv**2)))}


def make_plan(optics, optical_to_mri, geometry: dict, *, diameter_um: float = 200.0, dilation_vox: float = 1.0,
              acceleration: float | None = None, n_samples: int | None = None,
              max_amplification: float | None = None, tr_ms: float = 10.0, seed: int = 0,
              source: str = "") -> dict:
    """Plan the k-space samples of an optics-guided acquisition (the ``plan.json`` content).

    Parameters
    ----------
    optics : dualmode.io.OpticalImage
        Fluorescence of the sample.
    optical_to_mri : (4, 4) array
        Optical um -> MRI RAS mm (a registration from an earlier acquisition, or the placement).
    geometry : dict
        ``matrix``, ``fov_mm`` and optionally ``position_mm``, ``orientation`` of the MRI grid.
    dilation_vox : float
        Support margin around every particle disc (registration uncertainty), voxels.
    acceleration, n_samples : float, int
        Budget (total samples, check samples included); default acceleration 10.
    max_amplification : float, optional
        Target accuracy: use the shortest greedy prefix whose noise amplification is at most this.

    Examples
    --------
    >>> plan = make_plan(optics, reg_matrix, {"matrix": [64, 64, 1], "fov_mm": [12.8, 12.8, 1]})  # doctest: +SKIP
    >>> plan["acceleration"], plan["design"]["condition_number"]                                   # doctest: +SKIP
    """
    from dualmode.recon.planned import planned_flip_angle

    matrix = [int(v) for v in geometry["matrix"]]
    fov = [float(v) for v in geometry["fov_mm"]]
    affine = mri_affine(matrix, fov, geometry.get("position_mm", (0.0, 0.0, 0.0)), geometry.get("orientation"))
    vox_mm = np.array(fov) / np.array(matrix)
    centres = optical_particles_on_grid(optics, optical_to_mri, affine, diameter_um=diameter_um)
    support, outside = support_from_particles(centres, matrix, vox_mm, diameter_um=diameter_um,
                                              dilation_vox=dilation_vox)
    s = int(support.sum())
    if s == 0:
        raise ValueError("no optical particle maps into the MRI field: nothing to plan")
    n_full = int(np.prod(matrix))
    n_fit, n_check = sample_budget(n_full, s, n_samples=n_samples,
                                   acceleration=acceleration if acceleration or n_samples else 10.0)
    fit = _design(support, n_fit, max_amplification)
    check = _check_coords(fit, matrix, n_check, seed)
    coords = np.concatenate([fit, check])
    flip = planned_flip_angle(len(coords), DEPLETION)
    quality = design_quality(fit, support)
    quality["noise_per_voxel_vs_full"] = quality["noise_amplification"] * float(np.sqrt(n_full / len(fit)))
    nd = coords.shape[1]
    return {
        "format": PLAN_FORMAT, "source": source,
        "geometry": {"matrix": matrix, "fov_mm": fov, "affine": affine.tolist()},
        "optical_to_mri": np.asarray(optical_to_mri, float).tolist(),
        "support": {"particles_voxel": np.round(centres, 3).tolist(), "particles_outside_grid": outside,
                    "diameter_um": diameter_um, "dilation_voxels": dilation_vox, "n_voxels": s,
                    "voxels": np.argwhere(support).tolist()},
        "coords": np.pad(coords, ((0, 0), (0, 3 - nd))).tolist(),
        "coords_unit": "cycles per FOV, centred (k = index - N//2), acquisition order",
        "design_rank": list(range(len(fit))) + [None] * len(check),
        "check": [False] * len(fit) + [True] * len(check),
        "n_fit": len(fit), "n_check": len(check), "n_full": n_full,
        "acceleration": n_full / len(coords),
        "excitation": {"kind": "single point (pure phase encoding), one excitation per sample",
                       "flip_angle_deg": flip, "tr_ms": tr_ms, "polarization_spent_per_shot": DEPLETION},
        "design": quality,
    }


def read_plan(path: str | os.PathLike) -> dict:
    """Load ``plan.json``; ValueError if it is not a dualmode plan."""
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path}: not a {PLAN_FORMAT} file")
    return plan


def plan_support(plan: dict) -> np.ndarray:
    """The support mask the plan assumed."""
    support = np.zeros(plan["geometry"]["matrix"], bool)
    vox = np.asarray(plan["support"]["voxels"], int).reshape(-1, 3)
    support[tuple(vox.T)] = True
    return support


def plan_coords(plan: dict) -> np.ndarray:
    """Sample coordinates ``(m, d)`` (``d`` = encoded dimensions) in acquisition order."""
    nd = 2 if plan["geometry"]["matrix"][2] == 1 else 3
    return np.asarray(plan["coords"], float)[:, :nd]



def _encsteps_text(plan: dict) -> str:
    """Bruker-style ``PVM_EncSteps`` lists (JCAMP-DX parameter syntax), one per encoded axis."""
    k = np.rint(plan_coords(plan)).astype(int)
    lines = [f"##TITLE=dualmode plan: {len(k)} phase-encode steps (acquisition order, offsets from the "
             "k-space centre; every axis phase encoded, one sample per excitation)",
             "##JCAMP-DX=4.24", "##DATATYPE=Parameter Values"]
    for a in range(k.shape[1]):
        lines.append(f"##$PVM_EncSteps{a}=( {len(k)} )")
        vals = [str(v) for v in k[:, a]]
        lines += [" ".join(vals[i:i + 16]) for i in range(0, len(vals), 16)]
    lines.append("##END=")
    return "\n".join(lines) + "\n"


def _trajectory_kspace(plan: dict):
    """A :class:`~dualmode.kspace.KSpace` of zeros with the plan's samples as single-point readouts."""
    from dualmode.kspace import KSpace, KSpaceHeader

    geo, exc = plan["geometry"], plan["excitation"]
    affine = np.asarray(geo["affine"], float)
    vox = np.sqrt((affine[:3, :3] ** 2).sum(0))
    header = KSpaceHeader(matrix=tuple(geo["matrix"]), fov_mm=tuple(geo["fov_mm"]),
                          position_mm=tuple(affine[:3, :3] @ (np.array(geo["matrix"]) // 2) + affine[:3, 3]),
                          orientation=affine[:3, :3] / vox, trajectory="planned", tr_ms=exc["tr_ms"],
                          flip_angle_deg=exc["flip_angle_deg"], extra={"readout_length": 1})
    coords = np.asarray(plan["coords"], float)
    return KSpace(np.zeros((1, 1, len(coords)), np.complex64), header, source="plan", coords=coords)


def write_plan(plan: dict, out_dir: str | os.PathLike) -> dict:
    """Write ``plan.json``, ``plan_trajectory.h5`` (ISMRMRD) and ``plan_encsteps.txt``; return their paths."""
    from dualmode.atomic import atomic_path, write_text
    from dualmode.io.ismrmrd_io import write_ismrmrd

    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, f) for k, f in
             (("plan", "plan.json"), ("trajectory", "plan_trajectory.h5"), ("encsteps", "plan_encsteps.txt"))}
    write_text(paths["plan"], json.dumps(plan, indent=1))
    write_text(paths["encsteps"], _encsteps_text(plan))
    with atomic_path(paths["trajectory"]) as tmp:
        write_ismrmrd(tmp, _trajectory_kspace(plan))
    return paths


def _transform(args, folder_manifest: dict | None, optics) -> tuple[np.ndarray, str, float]:
    """``(optical_to_mri, source, extra dilation in mm)`` from ``--registration`` or the placement."""
    if args.registration:
        if args.registration.endswith(".tfm"):
            from dualmode.registration.resample import read_tfm

            return read_tfm(args.registration), args.registration, 0.0
        with open(args.registration, encoding="utf-8") as f:
            return np.asarray(json.load(f)["optical_to_mri"], float), args.registration, 0.0
    place = ((folder_manifest or {}).get("optics") or {}).get("placement") or {}
    centre = args.center_mm or place.get("center_mm")
    if centre is None:
        raise ValueError("no registration (--registration) and no placement (--center-mm or the manifest's "
                         "optics.placement.center_mm): the optics cannot be put on the MRI grid")
    size_um = (np.array(optics.data.shape) - 1) * np.array(optics.spacing_um)
    o2m = np.eye(4)
    o2m[:3, :3] = np.eye(3) * 1e-3
    o2m[:3, 3] = np.asarray(centre, float) - 1e-3 * np.r_[size_um[:2] / 2, 0.0]
    return o2m, "placement (identity rotation)", float(place.get("uncertainty_mm", 1.0))


def _inputs(args):
    """Optics, geometry, manifest (or None) from a folder or an optical image plus ``--matrix/--fov-mm``."""
    from dualmode.io import read_optical
    from dualmode.io.manifest import read_manifest

    src = args.source
    if os.path.isdir(src):
        man = read_manifest(src)
        if not man.get("optics"):
            raise ValueError(f"{src}: the manifest has no optics section: nothing to plan from")
        optics = read_optical(os.path.join(src, man["optics"]["image"]),
                              pixel_size_um=man["optics"].get("pixel_size_um"))
        geo = man["mri"].get("geometry")
        if not geo:
            raise ValueError(f"{src}: the manifest has no mri.geometry; give --matrix and --fov-mm")
        return optics, geo, man
    if not (args.matrix and args.fov_mm):
        raise ValueError("planning from an optical image needs --matrix and --fov-mm of the MRI grid")
    return read_optical(src), {"matrix": args.matrix, "fov_mm": args.fov_mm}, None


def cmd_plan(args) -> int:
    """``dualmode plan``: write the plan files; exit 0, or 1 with one error line."""
    import sys

    try:
        optics, geo, man = _inputs(args)
        if args.matrix:
            geo = {**geo, "matrix": args.matrix}
        if args.fov_mm:
            geo = {**geo, "fov_mm": args.fov_mm}
        o2m, how, extra_mm = _transform(args, man, optics)
        voxel = float(np.mean(np.array(geo["fov_mm"][:2], float) / np.array(geo["matrix"][:2])))
        diameter = args.diameter_um or float(((man or {}).get("optics") or {}).get("particle_diameter_um", 200.0))
        plan = make_plan(optics, o2m, geo, diameter_um=diameter, dilation_vox=args.dilation + extra_mm / voxel,
                         acceleration=args.acceleration, n_samples=args.samples,
                         max_amplification=args.max_noise_amplification, tr_ms=args.tr_ms, source=how)
        out = args.out or (os.path.join(args.source, "plan") if os.path.isdir(args.source) else "plan")
        paths = write_plan(plan, out)
    except (ValueError, OSError) as err:
        print(f"dualmode plan: error: {err}", file=sys.stderr)
        return 1
    d = plan["design"]
    print(f"{plan['n_fit']} + {plan['n_check']} check samples of {plan['n_full']} (R = {plan['acceleration']:.1f}) "
          f"for {plan['support']['n_voxels']} support voxels ({len(plan['support']['particles_voxel'])} particles, "
          f"transform: {how}); cond(A_S) = {d['condition_number']:.1f}, noise amplification "
          f"{d['noise_amplification']:.2f}; wrote " + ", ".join(paths.values()))
    return 0
