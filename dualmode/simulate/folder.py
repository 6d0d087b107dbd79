"""Simulator of a dual-mode acquisition folder with ground truth.

Writes the acquisition-folder format (``docs/acquisition-format.md``):
hyperpolarized 13C k-space with alternating polarization sign as ISMRMRD, the
fluorescence of the same particles as OME-TIFF, the manifest, and
``truth/`` + ``truth.json`` which the pipeline never reads.

Physics in the simulation
    * 13C (:mod:`.mri`): diamond particles (100-300 um spheres, clusters of touching
      spheres, prolate grains) whose k-space is their analytic Fourier transform at
      every sample (:mod:`.analytic`), for Cartesian, radial, centre-out radial,
      spiral and single-point acquisitions (:mod:`.sampling`); a sign-invariant
      background B (thermal 13C / other material) that may change between shots;
      shot k gives ``s_k a_k e^{i phi_k} H + B + drift_k + noise`` with amplitude
      asymmetry between + and - shots, a phase difference, decay of the
      polarization from shot to shot, a linear drift, RF depletion in acquisition
      order (``cos alpha`` per excitation), T2* decay and off-resonance along the
      readout, and rigid motion of the sample between shots.
    * Optics: the same particles seen through tissue: depth-dependent scattering
      blur and attenuation, autofluorescence of the tissue, Poisson photon noise and
      Gaussian read noise, placed by a known rigid transform (rotation about z,
      translation, optional mirror of y: :func:`.phantom.rotation_z`) relative to the MRI frame.
      With modulated frames, the autofluorescence photobleaches from frame to frame
      (NV centres are photostable).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np
from scipy import ndimage

from dualmode.conventions import apply_affine, mri_affine
from dualmode.io.ismrmrd_io import write_ismrmrd
from dualmode.io.manifest import FORMAT
from dualmode.io.optics import write_ome_frames, write_ome_tiff
from dualmode.kspace import KSpace, KSpaceHeader
from dualmode.recon.schemes import polarization_scheme

from .config import C13_FREQUENCY_7T_HZ, SimulationConfig, _mri_grid
from .analytic import make_bodies
from .mri import _background_compartment, simulate_mri
from .optics import (_camera, _inside, _render_optics, modulated_frames, place_in_camera_frame, placement_center,
                     rotated_frame)
from .phantom import rotation_z


def _place_particles(cfg, rng, mri_aff, matrix, fov, field_centre_mm):
    """Particle centres (MRI mm) and diameters: most inside the optical field, some outside."""
    n_in = cfg.n_particles - cfg.particles_outside_optics
    half = cfg.optical_field_mm / 2 - 0.2
    pts, diam = [], []
    min_sep = 0.6  # mm, keeps particles resolvable at ~0.2-0.3 mm voxels
    zc = mri_aff[2, 3] + mri_aff[2, 2] * (matrix[2] // 2)
    mri_half = np.array(fov[:2]) / 2 - 0.6
    tries = 0
    while len(pts) < cfg.n_particles and tries < 20000:
        tries += 1
        inside = len(pts) < n_in
        if inside:
            xy = field_centre_mm[:2] + rng.uniform(-half, half, 2)
        else:
            xy = rng.uniform(-mri_half, mri_half, 2)
            if np.all(np.abs(xy - field_centre_mm[:2]) < cfg.optical_field_mm / 2 + 0.3):
                continue
        if np.any(np.abs(xy) > mri_half):
            continue
        if cfg.ndim == 2:
            z = zc
        else:
            depth_range = cfg.depth_mm if cfg.widefield else min(
                cfg.depth_mm, cfg.optical_z_slices * cfg.optical_z_step_um / 1000 - 0.2)
            z = field_centre_mm[2] + rng.uniform(0.1, max(depth_range, 0.15))
        p = np.array([*xy, z])
        if pts and np.min(np.linalg.norm(np.array(pts) - p, axis=1)) < min_sep:
            continue
        pts.append(p)
        diam.append(rng.uniform(*cfg.diameter_um))
    return np.array(pts), np.array(diam)


def simulate_folder(out_dir: str | os.PathLike, cfg: SimulationConfig | None = None) -> dict:
    """Write a simulated acquisition folder to ``out_dir``; return the truth dict.

    The folder name becomes the acquisition name. Existing files are overwritten.

    Parameters
    ----------
    out_dir : path-like
        The acquisition folder to write (``acquisition.json``, ``mri/``, ``optics/``, ``truth/``).
    cfg : SimulationConfig, optional
        Every knob of the simulation (default: ``SimulationConfig()``).

    Returns
    -------
    dict
        The truth (also written as ``truth.json``): particles with their MRI and optical
        positions, the true optical-to-MRI transform, the noise level and per-shot weights.

    Examples
    --------
    >>> truth = simulate_folder("acq", SimulationConfig(seed=7))   # doctest: +SKIP
    >>> truth["particles"][0]["amplitude"]                           # doctest: +SKIP
    """
    cfg = cfg or SimulationConfig()
    rng = np.random.default_rng(cfg.seed)
    out_dir = os.fspath(out_dir)
    for sub in ("mri", "optics", "truth"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    matrix, fov = _mri_grid(cfg)
    aff = mri_affine(matrix, fov, (0.0, 0.0, 0.0))
    polarization = polarization_scheme(cfg.scheme, cfg.n_cycles).astype(int)
    frame = _optical_frame(cfg, rng, aff, matrix, fov)
    centres_mm, diam_um = (place_in_camera_frame(cfg, rng, frame, fov) if frame.get("rotated") else
                           _place_particles(cfg, rng, aff, matrix, fov, frame["field_centre"]))
    in_mri, in_optics = _outliers(cfg, rng, len(centres_mm))
    bodies = make_bodies(rng, centres_mm, diam_um, in_mri, clusters=cfg.clusters, aspect=cfg.ellipsoid_aspect,
                         flat=cfg.ndim == 2)
    planned = cfg.trajectory == "planned"  # the MRI then follows a plan made from the written optics
    if not planned:
        data, mri_truth, smp, flip = simulate_mri(cfg, rng, matrix, fov, aff, bodies, polarization, len(centres_mm))
    optics = _simulate_optics(cfg, rng, out_dir, frame, centres_mm, diam_um, in_optics, fov)
    if planned:
        from .planned import simulated_plan

        plan = simulated_plan(cfg, rng, out_dir, frame["optical_to_mri"], matrix, fov)
        data, mri_truth, smp, flip = simulate_mri(cfg, rng, matrix, fov, aff, bodies, polarization,
                                                  len(centres_mm), plan=plan)
    _write_mri(out_dir, cfg, data, smp, flip, matrix, fov, polarization)
    _write_manifest(out_dir, cfg, optics["section"], polarization, flip, matrix, fov)
    _write_truth_images(out_dir, aff, mri_truth)
    truth = _truth_dict(cfg, frame, optics, mri_truth, bodies, centres_mm, diam_um, in_mri, in_optics, matrix, fov)
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=2)
    return truth


def _optical_frame(cfg, rng, aff, matrix, fov) -> dict:
    """Rotation (+ mirror) about z and the field centre at a random MRI position: ``optical_to_mri``
    (any camera orientation and stack direction: :func:`.optics.rotated_frame`)."""
    if cfg.optical_rotation != "none" or cfg.stack_direction != "into":
        return rotated_frame(cfg, rng, fov)
    rot = rotation_z(cfg.rotation_deg, cfg.mirror)
    zc = aff[2, 3] + aff[2, 2] * (matrix[2] // 2)
    surface_z = zc if cfg.ndim == 2 else -fov[2] / 2 + 0.5
    field_centre = np.array([*rng.uniform(-1.5, 1.5, 2), surface_z])
    n_xy = int(round(cfg.optical_field_mm * 1000 / cfg.optical_pixel_um))
    centre_um = np.array([(n_xy - 1) / 2 * cfg.optical_pixel_um] * 2 + [0.0])
    opt_to_mri = np.eye(4)
    opt_to_mri[:3, :3] = rot * 1e-3
    opt_to_mri[:3, 3] = field_centre - rot @ centre_um * 1e-3
    return {"field_centre": field_centre, "n_xy": n_xy, "optical_to_mri": opt_to_mri}


def _outliers(cfg, rng, n: int):
    """In-field particles seen by one modality only (alternately optics-only, MRI-only)."""
    in_mri, in_optics = np.ones(n), np.ones(n)
    n_field = cfg.n_particles - cfg.particles_outside_optics
    picks = rng.permutation(min(n_field, n))[: int(round(cfg.outliers * n_field))]
    in_mri[picks[0::2]] = 0
    in_optics[picks[1::2]] = 0
    return in_mri, in_optics


def _simulate_optics(cfg, rng, out_dir, frame, centres_mm, diam_um, in_optics, fov) -> dict:
    """Render and write the fluorescence (and modulated frames); return positions and the manifest section."""
    opt_to_mri = frame["optical_to_mri"]
    pts_um = apply_affine(np.linalg.inv(opt_to_mri), centres_mm)
    if cfg.ndim == 2:
        depth_mm = rng.uniform(cfg.min_depth_mm, cfg.depth_mm, len(pts_um))
        pts_um[:, 2] = 0.0
    else:
        depth_mm = frame["depth_mm"](pts_um) if "depth_mm" in frame else np.clip(pts_um[:, 2] / 1000.0, 0, None)
    render_um = pts_um.copy()
    if cfg.widefield:  # one camera image: every particle projected onto the focal plane
        render_um[:, 2] = 0.0
    tissue = _background_compartment((64, 64, 1), np.random.default_rng(cfg.seed + 7))[..., 0]

    def tissue_fn(grid):
        mri_xyz = apply_affine(opt_to_mri, np.stack([g.ravel() for g in grid], axis=1))
        ij = apply_affine(np.linalg.inv(mri_affine((64, 64, 1), (fov[0], fov[1], 1.0))), mri_xyz)[:, :2]
        vals = ndimage.map_coordinates(tissue, ij.T, order=1, mode="nearest")
        return (0.5 + vals).reshape(grid[0].shape)

    nv, auto, spacing = _render_optics(cfg, rng, render_um, diam_um, depth_mm, tissue_fn, in_optics)
    section = {
        "image": "optics/fluorescence.ome.tif",
        "channel": "NV (red)",
        "particle_diameter_um": float(np.mean(cfg.diameter_um)),
        "placement": {
            "center_mm": placement_center(cfg, rng, frame).round(3).tolist(),
            "uncertainty_mm": max(3 * cfg.placement_error_mm, 1.0),
            "note": "rough MRI RAS position of the optical data's centre (middle pixel; a stack: its middle)",
        },
    }
    if cfg.optical_frames:
        image = _write_modulated_frames(cfg, rng, out_dir, nv, auto, spacing, section)
    else:
        image = _camera(rng, cfg, auto + nv)
    write_ome_tiff(os.path.join(out_dir, section["image"]), image, spacing, ["NV fluorescence"])
    return {"section": section, "pts_um": pts_um, "depth_mm": depth_mm, "spacing": spacing}


def _write_modulated_frames(cfg, rng, out_dir, nv, auto, spacing, section) -> np.ndarray:
    """Microwave on/off frames: NV modulated, autofluorescence photobleaching (NV is photostable).

    Returns the mean frame (the plain fluorescence image).
    """
    frames, states = modulated_frames(cfg, rng, nv, auto)
    write_ome_frames(os.path.join(out_dir, "optics/modulated.ome.tif"), frames, spacing)
    section["modulation"] = {"frames": "optics/modulated.ome.tif", "states": states.tolist(),
                             "kind": "microwave on/off (1 = NV bright state)"}
    return frames.mean(axis=0)


def _write_mri(out_dir, cfg, data, smp, flip, matrix, fov, polarization) -> None:
    extra = {} if smp.readout_length is None else {"readout_length": smp.readout_length}
    header = KSpaceHeader(
        matrix=matrix, fov_mm=fov, position_mm=(0.0, 0.0, 0.0), tr_ms=cfg.tr_ms, trajectory=smp.trajectory,
        flip_angle_deg=flip, nucleus="13C", frequency_hz=C13_FREQUENCY_7T_HZ, n_repetitions=polarization.size,
        n_coils=1, line_order=smp.line_order, extra=extra)
    coords = None if smp.trajectory == "cartesian" else smp.coords
    ksp = KSpace(data, header, source="simulated", coords=coords, mask=smp.mask)
    write_ismrmrd(os.path.join(out_dir, "mri/kspace.h5"), ksp)


def _write_manifest(out_dir, cfg, optics_sec, polarization, flip, matrix, fov) -> None:
    manifest = {
        "format": FORMAT,
        "sample": os.path.basename(os.path.normpath(out_dir)),
        "mri": {
            "source": {"format": "ismrmrd", "path": "mri/kspace.h5"},
            "polarization": polarization.tolist(),
            "scheme": cfg.scheme,
            "nucleus": "13C",
            "frequency_hz": C13_FREQUENCY_7T_HZ,
            "flip_angle_deg": flip,
            "tr_ms": cfg.tr_ms,
            **({"sampling": "mri/plan/plan.json"} if cfg.trajectory == "planned" else {}),
            "dwell_us": cfg.dwell_us,
            **({"off_resonance_hz": cfg.off_resonance_hz} if cfg.off_resonance_hz else {}),
            **({"t2star_ms": cfg.t2star_ms} if cfg.t2star_ms else {}),
            "geometry": {"matrix": list(matrix), "fov_mm": list(fov), "position_mm": [0.0, 0.0, 0.0],
                         "orientation": np.eye(3).tolist()},
        },
        "optics": optics_sec,
        "simulated": True,
    }
    with open(os.path.join(out_dir, "acquisition.json"), "w") as f:
        json.dump(manifest, f, indent=2)


def _write_truth_images(out_dir, aff, mri_truth) -> None:
    import nibabel as nib

    for name, arr in (("c13", mri_truth["h"]), ("background", mri_truth["b"]),
                      ("c13_bandlimited", mri_truth["h_bandlimited"])):
        img = nib.Nifti1Image(arr.astype(np.float32), aff)
        img.set_sform(aff, code=1)
        img.set_qform(aff, code=1)
        nib.save(img, os.path.join(out_dir, "truth", f"{name}.nii.gz"))


def _truth_dict(cfg, frame, optics, mri_truth, bodies, centres_mm, diam_um, in_mri, in_optics, matrix, fov) -> dict:
    """Content of ``truth.json`` (the pipeline never reads it)."""
    spacing, n_xy = optics["spacing"], frame["n_xy"]
    vox = np.array(fov) / np.array(matrix)
    rows = zip(centres_mm, optics["pts_um"], diam_um, optics["depth_mm"], in_mri, in_optics, mri_truth["amplitude"])
    return {
        "particles": [
            {"mri_xyz_mm": c.round(5).tolist(), "optical_xyz_um": p.round(3).tolist(),
             "diameter_um": round(float(d), 2), "depth_mm": round(float(dm), 4),
             "in_optical_field": bool(_inside(p, n_xy, spacing, cfg)), "in_mri": bool(im), "in_optics": bool(io_),
             "amplitude": round(float(a), 6), "n_bodies": int(np.sum(bodies.particle == k))}
            for k, (c, p, d, dm, im, io_, a) in enumerate(rows)
        ],
        "amplitude_note": "integrated truth H over the particle (sum of truth/c13.nii.gz over its voxels), "
                          "at unit mean polarization; at the time the k-space centre is sampled",
        "mri_voxel_mm": vox.tolist(),
        "optical_to_mri": frame["optical_to_mri"].tolist(),
        "noise_sigma": mri_truth["sigma"],
        "noise_sigma_note": "per real/imaginary component of one shot image; peak |H| = 1",
        "shot_weights": [[float(v.real), float(v.imag)] for v in mri_truth["c"]],
        "shot_displacement_mm": np.round(mri_truth["displacement_mm"], 6).tolist(),
        "off_resonance_shift_voxels": float(cfg.off_resonance_hz * matrix[0] * cfg.dwell_us * 1e-6)
        if cfg.trajectory == "cartesian" else None,
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
    }
