"""Every output file of one acquisition folder, written from its :class:`~dualmode.pipeline.FolderResult` (all atomic).

Geometry rules (see :mod:`dualmode.conventions`): NIfTI arrays are ``[x, y, z(, c)]``
with the RAS mm affine stored as both sform and qform (code 1, scanner);
OME-TIFF is ``CZYX`` on disk with physical sizes in µm.
"""

from __future__ import annotations

import csv
import io as stdio
import json
import os

import numpy as np

import time

from dualmode.conventions import apply_affine, voxel_sizes
from dualmode.serialize import jsonable

from .atomic import atomic_path, write_text


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, intent: str = "") -> None:
    """Save float32 NIfTI-1 with sform = qform = ``affine`` (RAS mm), codes 1 (scanner)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if intent:
        img.header["descrip"] = intent[:79].encode()
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def write_fused_ome_tiff(path, fused_xyzc: np.ndarray, affine: np.ndarray, channel_names) -> None:
    """Write ``fused[x, y, z, c]`` as OME-TIFF CZYX with physical sizes in µm."""
    from dualmode.io.optics import write_ome_tiff

    spacing_um = voxel_sizes(affine) * 1000.0
    with atomic_path(path) as tmp:
        write_ome_tiff(tmp, np.moveaxis(fused_xyzc, -1, 0), spacing_um, list(channel_names))


def write_json(path, obj) -> None:
    """Write JSON atomically (numpy values converted, NaN/Inf as null)."""
    write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def write_csv(path, rows: list[dict]) -> None:
    """Write a list of dicts as CSV atomically (header from the first row)."""
    buf = stdio.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())


def registration_json(reg) -> dict:
    """Content of ``registration.json``."""
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


def particle_rows(reg) -> list[dict]:
    """Rows of ``particles.csv``: one per matched pair, both positions and the residual."""
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


def write_c13_outputs(result, out: str) -> None:
    """``c13.nii.gz`` and ``background.nii.gz``."""
    write_nifti(os.path.join(out, "c13.nii.gz"), result.c13.data, result.c13.affine,
                "dualmode 13C |H| background-free")
    write_nifti(os.path.join(out, "background.nii.gz"), result.background.data, result.background.affine,
                "dualmode 13C |B| sign-invariant background")


def write_fusion_outputs(result, out: str) -> None:
    """Fused NIfTI, OME-TIFF and OME-Zarr, ``transform.tfm``, ``registration.json``, ``particles.csv``."""
    from dualmode.io.ngff import write_ome_zarr
    from dualmode.registration.resample import write_tfm

    reg, fused = result.registration, result.fused
    write_nifti(os.path.join(out, "fused.nii.gz"), fused.data, fused.affine, "dualmode fused: c0 13C, c1 optical")
    write_fused_ome_tiff(os.path.join(out, "fused.ome.tif"), fused.data, fused.affine, ["13C", "optical"])
    native = result.optical_native
    write_ome_zarr(os.path.join(out, "fused.ome.zarr"), result.c13.data, result.c13.affine, native.data,
                   native.affine, attrs={"optical_to_mri": np.asarray(reg.optical_to_mri).tolist(),
                                         "optical_native_spacing_um": list(map(float, result.optics.spacing_um))})
    write_tfm(os.path.join(out, "transform.tfm"), reg.optical_to_mri)
    write_json(os.path.join(out, "registration.json"), registration_json(reg))
    write_csv(os.path.join(out, "particles.csv"), particle_rows(reg))


def write_qc(result, out: str) -> None:
    """``qc.png`` (only for a registered folder)."""
    from .qc import write_qc_png

    acq = result.acquisition
    write_qc_png(os.path.join(out, "qc.png"), result.shots, acq.polarization, result.lockin, acq.optics,
                 result.optical_on_mri.data, result.c13.affine, result.registration, nv_lockin=result.nv_lockin)


def write_outputs(result, out: str | os.PathLike) -> dict:
    """Write every output of ``result`` into the folder ``out``; return the report written.

    ``report.json`` goes last, with the time of each write step in ``timings_s`` and the
    peak memory of the process.
    """
    from .provenance import peak_rss_mb

    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    timings = dict(result.timings)
    total = timings.pop("total", 0.0)
    t0 = time.perf_counter()
    write_c13_outputs(result, out)
    if result.registration is not None:
        write_fusion_outputs(result, out)
        t1 = time.perf_counter()
        timings["fuse"] = timings.get("fuse", 0.0) + t1 - t0
        write_qc(result, out)
        timings["qc"] = time.perf_counter() - t1
    timings["total"] = total + time.perf_counter() - t0
    report = {**result.report, "timings_s": timings, "peak_rss_mb": peak_rss_mb()}
    write_json(os.path.join(out, "report.json"), report)
    result.report = report
    return report
