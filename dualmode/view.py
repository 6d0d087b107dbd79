"""``dualmode view``: a result folder in napari, in RAS millimetres.

Images keep the NIfTI array order ``[x, y, z]`` and carry the NIfTI affine (voxel index ->
RAS mm, :mod:`dualmode.conventions`) as napari's layer ``affine``, so napari's world
coordinates are RAS millimetres and the 13C, optical and background volumes overlay by
construction. Particles from ``particles.csv`` are points in the same world coordinates:
the MRI detections and the optical detections mapped through the registration.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from dualmode.errors import InputError

#: napari colormap per fused channel name (NV centres fluoresce red).
COLORMAPS = {"13C": "cyan", "optical": "red"}


def _channel_names(descrip: bytes, n: int) -> list[str]:
    """Names from the header written by the pipeline, ``"dualmode fused: c0 13C, c1 optical"``."""
    text = descrip.decode(errors="replace") if isinstance(descrip, bytes) else str(descrip)
    names = []
    for part in text.partition(":")[2].split(","):
        tag, _, name = part.strip().partition(" ")
        if tag.startswith("c") and name.strip():
            names.append(name.strip())
    return names if len(names) == n else [f"channel {c}" for c in range(n)]


def _points(path: str, prefix: str) -> np.ndarray:
    """``(n, 3)`` RAS mm coordinates from columns ``<prefix>_x_mm, _y_mm, _z_mm``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [f"{prefix}_{a}_mm" for a in "xyz"]
    if rows and not all(c in rows[0] for c in cols):
        raise InputError(path, f"missing columns {cols}", "particles")
    return np.array([[float(r[c]) for c in cols] for r in rows]).reshape(-1, 3)


def result_layers(result_dir: str | os.PathLike) -> list[tuple[np.ndarray, dict, str]]:
    """napari layer-data tuples ``(data, kwargs, layer_type)`` of one result folder.

    Parameters
    ----------
    result_dir : path
        ``OUT/<name>/`` written by ``dualmode run`` (needs ``fused.nii.gz``; uses
        ``background.nii.gz`` and ``particles.csv`` when present).

    Returns
    -------
    list of tuple
        One ``"image"`` layer per fused channel, the background (hidden), and ``"points"``
        layers of the particles, all in RAS mm world coordinates.
    """
    import nibabel as nib

    result_dir = os.fspath(result_dir)
    fused_path = os.path.join(result_dir, "fused.nii.gz")
    if not os.path.isfile(fused_path):
        raise InputError(fused_path, "not found (is this a dualmode result folder?)")
    img = nib.load(fused_path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 4:
        raise InputError(fused_path, f"expected [x, y, z, channel] data, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=float)
    layers = []
    for c, name in enumerate(_channel_names(img.header["descrip"].item(), data.shape[-1])):
        channel = data[..., c]
        finite = channel[np.isfinite(channel)]
        hi = float(np.percentile(finite, 99.9)) if finite.size else 1.0
        layers.append((channel, {"name": name, "affine": affine, "blending": "additive",
                                 "colormap": COLORMAPS.get(name, "gray"),
                                 "contrast_limits": (0.0, hi if hi > 0 else 1.0)}, "image"))
    background = os.path.join(result_dir, "background.nii.gz")
    if os.path.isfile(background):
        bg = nib.load(background)
        layers.append((np.asarray(bg.dataobj, dtype=np.float32),
                       {"name": "background", "affine": np.asarray(bg.affine, dtype=float),
                        "visible": False, "colormap": "gray"}, "image"))
    particles = os.path.join(result_dir, "particles.csv")
    if os.path.isfile(particles):
        for prefix, name, color in (("mri", "particles (MRI)", "cyan"),
                                    ("optical_in_mri", "particles (optical, registered)", "red")):
            pts = _points(particles, prefix)
            size = 3.0 * float(np.min(np.linalg.norm(affine[:3, :3], axis=0)))  # 3 voxels
            layers.append((pts, {"name": name, "size": size, "face_color": color,
                                 "opacity": 0.6}, "points"))
    return layers


def show(result_dir: str | os.PathLike) -> None:
    """Open :func:`result_layers` in a napari viewer and run its event loop."""
    layers = result_layers(result_dir)  # bad folders fail before the GUI starts
    try:
        import napari
    except ImportError as err:
        raise ImportError("napari is not installed: pip install 'dualmode[view]'") from err
    viewer = napari.Viewer(title=f"dualmode: {os.path.basename(os.path.abspath(result_dir))}")
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.dims.axis_labels = ("x (R)", "y (A)", "z (S)")
    napari.run()
