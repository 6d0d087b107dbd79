"""Every output file of one acquisition folder, written from its :class:`~dualmode.pipeline.FolderResult` (all atomic).

Geometry rules (see :mod:`dualmode.conventions`): NIfTI arrays are ``[x, y, z(, c)]``
with the RAS mm affine stored as both sform and qform (code 1, scanner);
OME-TIFF is ``CZYX`` on disk with physical sizes in µm.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io as stdio
import json
import os

import time

import numpy as np

from dualmode.conventions import apply_affine, voxel_sizes
from dualmode.serialize import jsonable

from .atomic import atomic_path, write_text
from .qc import CHANNEL_COLORS, h_window


def _nifti_image(data: np.ndarray, affine: np.ndarray, descrip: str = ""):
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if descrip:
        img.header["descrip"] = descrip[:79].encode()
    return img


#: above this many bytes a ``.nii.gz`` is streamed through nibabel's gzip instead of compressed whole in memory
_WHOLE_GZIP_BYTES = 256 * 2**20


def _save_nifti(img, path) -> None:
    """Save ``img``; a ``.nii.gz`` of up to 256 MB is compressed in one call to libdeflate
    (``imagecodecs.gzip_encode``, level 1): the same NIfTI bytes as ``nibabel.save`` inside a
    standard gzip stream, written ~4x faster than Python's ``gzip`` at level 1."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nbytes = np.prod(img.shape, dtype=float) * img.get_data_dtype().itemsize
        if not str(path).endswith(".gz") or nbytes > _WHOLE_GZIP_BYTES:
            nib.save(img, tmp)
            return
        import imagecodecs

        with open(tmp, "wb") as f:
            f.write(imagecodecs.gzip_encode(img.to_bytes(), level=1))


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, intent: str = "") -> None:
    """Save float32 NIfTI-1 with sform = qform = ``affine`` (RAS mm), codes 1 (scanner).

    ``intent`` is free text stored in ``descrip`` (79 characters at most).
    """
    _save_nifti(_nifti_image(data, affine, intent), path)


def write_vector_nifti(path: str | os.PathLike, data_xyzc: np.ndarray, affine: np.ndarray,
                       channel_names) -> None:
    """Save ``data[x, y, z, c]`` as a NIfTI vector image: components on dim 5, intent ``vector``.

    This is the NIfTI-1 form of a multi-component image (``dim = [5, X, Y, Z, 1, C]``,
    ``intent_code = 1007``), read by ITK/SimpleITK and 3D Slicer as one volume with ``C``
    components per voxel (not as a time series); spatial units mm, sform = qform = ``affine``.
    The channel names go into ``descrip`` (``"dualmode fused: c0 13C, c1 optical"``) and
    ``intent_name``.

    Examples
    --------
    >>> write_vector_nifti("fused.nii.gz", np.zeros((4, 4, 1, 2)), np.eye(4), ["13C", "optical"])  # doctest: +SKIP
    """
    names = list(channel_names)
    data = np.asarray(data_xyzc, dtype=np.float32)
    if data.ndim != 4 or data.shape[3] != len(names):
        raise ValueError(f"need [x, y, z, c] data with {len(names)} channels, got {data.shape}")
    descrip = "dualmode fused: " + ", ".join(f"c{i} {n}" for i, n in enumerate(names))
    img = _nifti_image(data[:, :, :, None, :], affine, descrip)
    img.header.set_intent("vector", (), name="/".join(names)[:15])
    img.header.set_xyzt_units("mm", "unknown")
    _save_nifti(img, path)


def write_fused_ome_tiff(path, fused_xyzc: np.ndarray, affine: np.ndarray, channel_names, *,
                         name: str | None = None, channel_colors=None) -> None:
    """Write ``fused[x, y, z, c]`` as OME-TIFF CZYX with physical sizes in µm.

    When the array's y axis points anterior (RAS), rows are stored anterior first so that
    Fiji and napari show anterior up, as ``qc.png`` does; the ``Description`` says so.
    """
    from dualmode.io.optics import write_ome_tiff

    spacing_um = voxel_sizes(affine) * 1000.0
    y_axis = np.asarray(affine, float)[:3, 1]
    anterior = bool(np.argmax(np.abs(y_axis)) == 1 and y_axis[1] > 0)
    with atomic_path(path) as tmp:
        write_ome_tiff(tmp, np.moveaxis(fused_xyzc, -1, 0), spacing_um, list(channel_names), name=name,
                       channel_colors=channel_colors, rows_anterior_first=anterior,
                       description="dualmode fused 13C + optical on the MRI grid")


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


def particle_rows(reg, amplitudes=None, max_distance_mm: float = 0.3) -> list[dict]:
    """Rows of ``particles.csv``: one per matched pair, both positions and the residual.

    With ``amplitudes`` (:func:`dualmode.pipeline.quantify_step`), ``mri_amplitude`` and
    ``mri_amplitude_sigma`` of the quantified particle nearest to each MRI position (empty
    when none lies within ``max_distance_mm``).
    """
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
            **_amplitude_columns(amplitudes, mp.xyz[im], max_distance_mm),
        })
    return [{k: (round(float(v), 5) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
            for r in rows]


def _amplitude_columns(amplitudes, xyz_mm, max_distance_mm: float) -> dict:
    """``mri_amplitude``/``mri_amplitude_sigma`` of the nearest quantified particle, if close enough."""
    if amplitudes is None:
        return {}
    cols = {"mri_amplitude": "", "mri_amplitude_sigma": ""}
    pts = amplitudes.xyz_mm if amplitudes.xyz_mm is not None else np.zeros((0, 3))
    if len(pts):
        dist = np.linalg.norm(pts - np.asarray(xyz_mm), axis=1)
        k = int(np.argmin(dist))
        if dist[k] <= max_distance_mm:
            cols = {"mri_amplitude": float(amplitudes.amplitude[k]), "mri_amplitude_sigma": float(amplitudes.sigma[k])}
    return cols


def write_c13_outputs(result, out: str) -> None:
    """``c13.nii.gz`` and ``background.nii.gz``."""
    write_nifti(os.path.join(out, "c13.nii.gz"), result.c13.data, result.c13.affine,
                "dualmode 13C |H| background-free")
    write_nifti(os.path.join(out, "background.nii.gz"), result.background.data, result.background.affine,
                "dualmode 13C |B| sign-invariant background")
    if result.c13_phased is not None:
        write_nifti(os.path.join(out, "c13_phased.nii.gz"), result.c13_phased.data, result.c13_phased.affine,
                    "dualmode 13C Re(H e^-i phi): signed, Gaussian noise")


def _now(fn, *args, **kwargs) -> None:
    fn(*args, **kwargs)


@contextlib.contextmanager
def side_writer(threads: int):
    """Yield ``submit(fn, *args, **kwargs)``: with ``threads >= 2`` the call runs in one helper thread
    (the gzip, zlib and Blosc encoders release the GIL, so NIfTI and TIFF files are compressed while
    the caller writes the OME-Zarr store), else at once. On exit every call has finished; the first
    error is raised."""
    if threads < 2:
        yield _now
        return
    from concurrent.futures import ThreadPoolExecutor

    futures = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dualmode-write") as pool:
        yield lambda fn, *args, **kwargs: futures.append(pool.submit(fn, *args, **kwargs))
    for future in futures:
        future.result()


def write_fusion_outputs(result, out: str, submit=_now) -> None:
    """Fused NIfTI, OME-TIFF and OME-Zarr, ``transform.tfm``, ``registration.json``, ``particles.csv``.

    The NIfTI and TIFF files go through ``submit`` (see :func:`side_writer`), the rest is written here.
    """
    from dualmode.io.ngff import write_ome_zarr
    from dualmode.registration.resample import write_tfm

    reg, fused = result.registration, result.fused
    names = ["13C", "optical"]
    submit(write_vector_nifti, os.path.join(out, "fused.nii.gz"), fused.data, fused.affine, names)
    submit(write_nifti, os.path.join(out, "optical_on_mri.nii.gz"), result.optical_on_mri.data,
           result.optical_on_mri.affine, "dualmode optical resampled on the 13C grid")
    submit(write_fused_ome_tiff, os.path.join(out, "fused.ome.tif"), fused.data, fused.affine, names,
           name=result.name, channel_colors=[CHANNEL_COLORS[n] for n in names])
    native = result.optical_native
    window = h_window(result.c13.data, result.lockin.noise_sigma)
    write_ome_zarr(os.path.join(out, "fused.ome.zarr"), result.c13.data, result.c13.affine, native.data,
                   native.affine, attrs={"optical_to_mri": np.asarray(reg.optical_to_mri).tolist(),
                                         "optical_native_spacing_um": list(map(float, result.optics.spacing_um))},
                   channels={"mri": ("13C", CHANNEL_COLORS["13C"], window),
                             "optical": ("optical", CHANNEL_COLORS["optical"], None)})
    write_tfm(os.path.join(out, "transform.tfm"), reg.optical_to_mri)
    write_json(os.path.join(out, "registration.json"), registration_json(reg))
    write_csv(os.path.join(out, "particles.csv"), particle_rows(reg, result.quantification,
                                                                    float(np.max(result.c13.voxel_mm[:2]))))


def write_qc(result, out: str) -> None:
    """``qc.png``: the registered layout, or the failure layout (13C row, detections, error)."""
    from .qc import write_qc_png

    write_qc_png(os.path.join(out, "qc.png"), result)


#: Files of an earlier result a new one keeps (appended to, not replaced).
CARRIED = ("log.txt",)
#: Files the batch writes into a result folder after it was swapped in (the study report's page).
DERIVED = ("report.html",)


def _check_replaceable(out: str) -> None:
    """Refuse to replace a result folder holding anything dualmode did not write there.

    Allowed: the files its ``report.json`` lists, ``report.json``, :data:`CARRIED`, the
    names of :data:`dualmode.pipeline.OUTPUT_FILES` (as files; ``*.zarr`` as folders), :data:`DERIVED` and
    leftovers of killed writers. A directory where an output file goes, or a file of the
    user's, fails the folder instead of being deleted.
    """
    from .atomic import OutputWriteError, _stale_target
    from .pipeline import OUTPUT_FILES

    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise OutputWriteError(errno.ENOTDIR, f"{out}: exists and is not a result folder; not replacing it")
    listed = set()
    try:
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            listed = {k.split("/")[0] for k in (json.load(f).get("outputs") or {})}
    except (OSError, ValueError, AttributeError):
        pass
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if _stale_target(name) is not None:
            continue
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        known = name in listed or name in OUTPUT_FILES or name in CARRIED + DERIVED or name == "report.json"
        if not known:
            raise OutputWriteError(errno.EEXIST, f"{path}: not written by dualmode; not replacing {out} "
                                       f"(move it away)")
        if is_dir != name.endswith(".zarr"):
            what = "a directory" if is_dir else "a file"
            code = errno.EISDIR if is_dir else errno.ENOTDIR
            raise OutputWriteError(code, f"{path}: {what} is where a dualmode output goes; not replacing it "
                                         f"(move it away)")


def write_outputs(result, out: str | os.PathLike) -> dict:
    """Write every output of ``result`` as the folder ``out``, all at once; return the report written.

    Every file is written into a hidden staging folder beside ``out``
    (:func:`dualmode.atomic.staged_folder`) and the whole folder is swapped in when all are
    written: ``out`` holds the previous complete result or the new complete one, never a
    mix. ``report.json`` goes last, with the time of each write step in ``timings_s``, the
    peak memory of the process and ``outputs``: the sha256 of every other file written
    (the definition of a complete result, checked by ``dualmode run --resume``).

    Raises
    ------
    dualmode.atomic.OutputWriteError
        A file could not be written (named: ``out/<file>``), or ``out`` holds something
        dualmode did not write (never deleted). ``out`` is left as it was.
    """
    from dualmode.registration.resample import folder_threads  # the folder's share of the cores

    from .atomic import staged_folder
    from .provenance import output_checksums, peak_rss_mb

    out = os.fspath(out)
    _check_replaceable(out)
    timings = dict(result.timings)
    total = timings.pop("total", 0.0)
    t0 = time.perf_counter()
    with staged_folder(out, carry=CARRIED) as stage:
        with side_writer(folder_threads()) as submit:
            submit(write_c13_outputs, result, stage)
            if result.registration is not None:
                write_fusion_outputs(result, stage, submit)
        t1 = time.perf_counter()
        step = "fuse" if result.registration is not None else "write"
        timings[step] = timings.get(step, 0.0) + t1 - t0
        write_qc(result, stage)
        timings["qc"] = time.perf_counter() - t1
        timings["total"] = total + time.perf_counter() - t0
        report = {**result.report, "timings_s": timings, "peak_rss_mb": peak_rss_mb(),
                  "outputs": output_checksums(stage)}
        write_json(os.path.join(stage, "report.json"), report)
    result.report = report
    return report
