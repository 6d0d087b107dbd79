"""The whole path for one acquisition folder.

read -> reconstruct every shot -> sign-flip lock-in (complex, per-shot amplitude and
phase estimated) -> background-free 13C image, background image, SNR -> particle
detection in both modes -> matching -> SimpleITK refinement -> optics resampled once
onto the fused grid -> outputs under ``OUT/<folder name>/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np

from dualmode import __version__
from dualmode.conventions import apply_affine, voxel_sizes
from dualmode.io import OpticalImage, load_acquisition
from dualmode.io.ngff import write_ome_zarr
from dualmode.recon.lockin_recon import lockin_reconstruct
from dualmode.recon.metrics import optical_metrics, signflip_metrics
from dualmode.recon.optical_lockin import optical_lockin

from .outputs import write_csv, write_fused_ome_tiff, write_json, write_nifti

log = logging.getLogger("dualmode")

OUTPUT_FILES = (
    "c13.nii.gz", "background.nii.gz", "fused.nii.gz", "fused.ome.tif", "registration.json",
    "fused.ome.zarr", "transform.tfm", "particles.csv", "report.json", "qc.png",
)


@dataclass
class PipelineOptions:
    """Choices a user can make per run (CLI flags mirror them)."""

    rf_correction: bool = True
    t1_s: float = float("inf")
    refine: bool = True
    allow_mirror: bool = True
    optical_pixel_size_um: tuple[float, ...] | None = None
    min_snr: float = 5.0
    fused_grid: str | float = "mri"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_checksums(folder: str) -> dict[str, str]:
    """sha256 of every file in the acquisition folder except ground truth."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "truth")
        for name in sorted(files):
            if name == "truth.json":
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = _sha256(path)
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): Linux ``VmHWM`` (which the batch resets per
    folder), else ``getrusage``, whose maximum also counts the parent of a spawned worker."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ["numpy", "scipy", "scikit-image", "SimpleITK", "nibabel", "numba", "tifffile", "ismrmrd"]
    out = {"dualmode": __version__}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "missing"
    return out


def process_folder(folder: str | os.PathLike, out_root: str | os.PathLike,
                   options: PipelineOptions | None = None) -> dict:
    """Process one acquisition folder; write every output; return the report.

    Raises
    ------
    dualmode.io.InputError
        Bad input (names file and field). Nothing is written for that folder.
    dualmode.registration.RegistrationError
        Too few particles to register; the 13C outputs written before stay.
    """
    from dualmode import registration as reg_mod

    opts = options or PipelineOptions()
    folder = os.fspath(folder)
    t = {"start": time.perf_counter()}
    acq = load_acquisition(folder, opts.optical_pixel_size_um)
    out = os.path.join(os.fspath(out_root), acq.name)
    os.makedirs(out, exist_ok=True)
    t["read"] = time.perf_counter()

    ksp = acq.kspace
    affine = ksp.header.affine()
    lock, images = lockin_reconstruct(ksp, acq.polarization, rf_correction=opts.rf_correction, t1_s=opts.t1_s)
    t["reconstruct"] = time.perf_counter()
    sigma = lock.noise_sigma
    c13 = np.abs(lock.signal).astype(np.float32)
    write_nifti(os.path.join(out, "c13.nii.gz"), c13, affine, "dualmode 13C |H| background-free")
    write_nifti(os.path.join(out, "background.nii.gz"), np.abs(lock.background), affine,
                "dualmode 13C |B| sign-invariant background")
    t["signflip"] = time.perf_counter()
    report = {
        "folder": folder,
        "name": acq.name,
        "mri": {**ksp.header.describe(), "undersampling": ksp.undersampling},
        "polarization": acq.polarization.tolist(),
        "signflip": {
            "noise_sigma": sigma,
            "snr": lock.snr,
            "shot_weights": [[float(c.real), float(c.imag)] for c in lock.shot_weights],
            **signflip_metrics(images, acq.polarization, lock, voxel_size=voxel_sizes(affine)),
        },
        "options": asdict(opts),
        "versions": _versions(),
        "input_sha256": input_checksums(folder),
    }
    optics, nv_lockin = acq.optics, None
    if optics is not None and optics.frames is not None and optics.states is not None:
        nv_lockin = optical_lockin(optics.frames, optics.states)
        report["optical_lockin"] = optical_metrics(optics.frames, nv_lockin)
        optics = OpticalImage(nv_lockin.nv, optics.spacing_um, optics.source)  # NV-specific image
    try:
        if optics is None:
            raise reg_mod.RegistrationError(f"{folder}: manifest has no optics section: nothing to fuse")
        reg = reg_mod.register(
            c13, affine, sigma, optics,
            center_mm=acq.placement_center_mm, uncertainty_mm=acq.placement_uncertainty_mm,
            diameter_um=acq.particle_diameter_um, allow_mirror=opts.allow_mirror, refine=opts.refine,
        )
    except reg_mod.RegistrationError as err:
        report["registration"] = {"error": str(err)}
        write_json(os.path.join(out, "report.json"), report)
        raise
    t["register"] = time.perf_counter()
    fused, fused_affine = reg_mod.fuse(c13, affine, optics, reg.optical_to_mri, grid=opts.fused_grid)
    write_nifti(os.path.join(out, "fused.nii.gz"), fused, fused_affine, "dualmode fused: c0 13C, c1 optical")
    write_fused_ome_tiff(os.path.join(out, "fused.ome.tif"), fused, fused_affine, ["13C", "optical"])
    write_ome_zarr(os.path.join(out, "fused.ome.zarr"), c13, affine, optics.data, optics.spacing_um,
                   reg.optical_to_mri)
    if opts.fused_grid == "mri":
        optical_on_mri = fused[..., 1]
    else:
        optical_on_mri = reg_mod.resample_optical(optics.data, optics.spacing_um, reg.optical_to_mri,
                                                  c13.shape, affine)
    reg_mod.write_tfm(os.path.join(out, "transform.tfm"), reg.optical_to_mri)
    write_json(os.path.join(out, "registration.json"), _registration_json(reg))
    write_csv(os.path.join(out, "particles.csv"), _particle_rows(reg))
    t["fuse"] = time.perf_counter()

    from .qc import write_qc_png

    write_qc_png(os.path.join(out, "qc.png"), images, acq.polarization, lock, acq.optics, optical_on_mri,
                 affine, reg, nv_lockin=nv_lockin)
    t["qc"] = time.perf_counter()
    vox = float(np.mean(voxel_sizes(affine)[: 2 if c13.shape[2] == 1 else 3]))
    report["registration"] = {
        "method": reg.method, "matched": reg.matched, "mirrored": reg.mirrored,
        "median_residual_mm": float(np.median(reg.residuals_mm)) if len(reg.residuals_mm) else None,
        "tre_loo_mm": reg.tre_loo_mm,
        "tre_loo_voxels": None if reg.tre_loo_mm is None else reg.tre_loo_mm / vox,
        "mri_particles": int(len(reg.mri_particles.xyz)),
        "optical_particles": int(len(reg.optical_particles.xyz)),
    }
    stages = ["read", "reconstruct", "signflip", "register", "fuse", "qc"]
    prev = t["start"]
    report["timings_s"] = {}
    for s in stages:
        report["timings_s"][s] = t[s] - prev
        prev = t[s]
    report["timings_s"]["total"] = prev - t["start"]
    report["peak_rss_mb"] = peak_rss_mb()
    write_json(os.path.join(out, "report.json"), report)
    log.info("%s: SNR %.1f, %d particles matched", acq.name, lock.snr, reg.matched)
    return report


def _registration_json(reg) -> dict:
    return {
        "optical_to_mri": np.asarray(reg.optical_to_mri).tolist(),
        "optical_to_mri_convention": "maps optical physical coordinates (um, origin at the centre of the "
                                     "first pixel, axes along the array axes x,y,z) to MRI world (mm, RAS)",
        "transform_tfm_convention": "transform.tfm is the ITK form: see dualmode.registration.write_tfm",
        "method": reg.method,
        "metric": reg.metric,
        "matched": reg.matched,
        "mirrored": reg.mirrored,
        "residuals_mm": np.asarray(reg.residuals_mm).tolist(),
        "tre_loo_mm": reg.tre_loo_mm,
        "details": reg.details,
    }


def _particle_rows(reg) -> list[dict]:
    rows = []
    mp, op = reg.mri_particles, reg.optical_particles
    mapped = apply_affine(reg.optical_to_mri, op.xyz) if len(op.xyz) else np.zeros((0, 3))
    for k, (io_, im) in enumerate(np.asarray(reg.pairs, dtype=int).reshape(-1, 2)):
        rows.append({
            "pair": k,
            "mri_x_mm": mp.xyz[im, 0], "mri_y_mm": mp.xyz[im, 1], "mri_z_mm": mp.xyz[im, 2],
            "optical_x_um": op.xyz[io_, 0], "optical_y_um": op.xyz[io_, 1], "optical_z_um": op.xyz[io_, 2],
            "optical_in_mri_x_mm": mapped[io_, 0], "optical_in_mri_y_mm": mapped[io_, 1],
            "optical_in_mri_z_mm": mapped[io_, 2],
            "residual_mm": float(reg.residuals_mm[k]),
            "mri_snr": float(mp.snr[im]), "optical_confidence": float(op.confidence[io_]),
        })
    return [{k: (round(float(v), 5) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
            for r in rows]
