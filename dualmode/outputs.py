"""Writers for the fixed output files of one acquisition (all atomic).

Geometry rules (see :mod:`dualmode.conventions`): NIfTI arrays are ``[x, y, z(, c)]``
with the RAS mm affine stored as both sform and qform (code 1, scanner);
OME-TIFF is ``CZYX`` on disk with physical sizes in µm.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from dualmode.conventions import voxel_sizes
from dualmode.recon.metrics import jsonable

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
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())
