"""OME-Zarr (OME-NGFF) output of the co-registered pair, each modality at its native resolution.

Layout of ``path`` (a zarr group)::

    path/mri        multiscale image, axes (z, y, x), 13C |H| on the MRI grid
    path/optical    multiscale image, axes (z, y, x), fluorescence resampled once onto
                    a grid with the MRI axes at the optical pixel size, covering the
                    optical field
    path/.zattrs    {"dualmode": {...}}  frame, MRI affine, optical_to_mri, grids

NGFF coordinate transformations are only scale + translation (no rotation), so
both images are written in one common physical frame, in millimetres:

* ``frame = "RAS"`` when the MRI affine is diagonal with positive voxel sizes:
  NGFF x, y, z are RAS world mm;
* ``frame = "mri_grid"`` otherwise: mm along the MRI array axes from the centre of
  MRI voxel 0 (``world = mri_affine @ diag(1/voxel) @ p``; the full affines are in
  the ``dualmode`` attributes).

The optical image therefore carries the registration (it is resampled with
:func:`dualmode.registration.resample_optical`, anti-aliased); its native pixel
size is kept as the NGFF scale. Arrays are ``[x, y, z]`` in memory and are
transposed to NGFF ``(z, y, x)`` here. Pyramid levels halve x and y (block mean;
translation shifted to the block centre), z is kept.
"""

from __future__ import annotations

import json
import os

import numpy as np

from dualmode.conventions import voxel_sizes

AXES = [
    {"name": "z", "type": "space", "unit": "millimeter"},
    {"name": "y", "type": "space", "unit": "millimeter"},
    {"name": "x", "type": "space", "unit": "millimeter"},
]


def _pyramid(arr_xyz, spacing_mm, first_mm, levels):
    """Block-mean pyramid in x, y with NGFF (z, y, x) scale/translation per level."""
    from skimage.transform import downscale_local_mean

    out, transforms = [], []
    arr = np.asarray(arr_xyz, np.float32)
    sp = np.asarray(spacing_mm, float)
    first = np.asarray(first_mm, float)
    for level in range(levels):
        if level:
            if min(arr.shape[:2]) < 2:
                break
            first = first + np.array([0.5, 0.5, 0.0]) * sp
            sp = sp * np.array([2.0, 2.0, 1.0])
            arr = downscale_local_mean(arr, (2, 2, 1))[: arr.shape[0] // 2, : arr.shape[1] // 2]
            arr = arr.astype(np.float32)
        out.append(np.ascontiguousarray(np.transpose(arr)))
        transforms.append([{"type": "scale", "scale": [float(v) for v in sp[::-1]]},
                           {"type": "translation", "translation": [float(v) for v in first[::-1]]}])
    return out, transforms


def write_ome_zarr(
    path: str | os.PathLike,
    mri_image: np.ndarray,
    mri_affine: np.ndarray,
    optical_data: np.ndarray,
    optical_spacing_um,
    optical_to_mri: np.ndarray,
    *,
    levels: int = 3,
) -> dict:
    """Write the MRI and the registered optical image as OME-Zarr (see module docstring).

    Parameters
    ----------
    path : path-like
        Output folder (``.ome.zarr``); written beside and renamed, an old one is removed first.
    mri_image : (I, J, K) ndarray
        13C magnitude ``[x, y, z]``.
    mri_affine : (4, 4) ndarray
        MRI voxel -> RAS mm.
    optical_data : (X, Y, Z) ndarray
        Fluorescence ``[x, y, z]``.
    optical_spacing_um : sequence of 3 float
    optical_to_mri : (4, 4) ndarray
        Optical um -> RAS mm.
    levels : int
        Pyramid levels per image (x, y halved per level).

    Returns
    -------
    dict
        The ``dualmode`` attributes written (frame, affines, grid of each image).
    """
    import warnings

    import zarr

    with warnings.catch_warnings():  # ome-zarr's own deprecated default argument (Scaler)
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscale

    from dualmode.atomic import atomic_path
    from dualmode.registration.fusion import aligned_grid
    from dualmode.registration.resample import resample_optical

    from .errors import InputError

    mri = np.asarray(mri_image, np.float32)
    aff = np.asarray(mri_affine, float)
    opt = np.asarray(optical_data, np.float32)
    o2m = np.asarray(optical_to_mri, float)
    if mri.ndim != 3 or opt.ndim != 3:
        raise InputError(os.fspath(path), f"need [x, y, z] arrays, got {mri.shape} and {opt.shape}", "data")
    vox = voxel_sizes(aff)
    lin = aff[:3, :3]
    ras = bool(np.allclose(lin, np.diag(np.diag(lin)), atol=1e-9 * vox.max()) and np.all(np.diag(lin) > 0))
    # common frame: grid frame p (mm along MRI axes from voxel 0); RAS adds the origin
    offset = aff[:3, 3] if ras else np.zeros(3)
    # optical footprint in the grid frame -> box at optical resolution
    osp = np.asarray(optical_spacing_um, float)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in opt.shape], indexing="ij")).reshape(3, -1).T * osp
    world = corners @ o2m[:3, :3].T + o2m[:3, 3]
    p = (world - aff[:3, 3]) @ np.linalg.inv(lin).T * vox
    half = osp * 1e-3 / 2
    lo, hi = p.min(0) - half, p.max(0) + half
    spacing = np.array([osp[0], osp[1], osp[2] if opt.shape[2] > 1 else vox[2] * 1e3]) * 1e-3
    if opt.shape[2] == 1:  # a plane: one slice through it
        mid = (lo[2] + hi[2]) / 2
        lo[2], hi[2] = mid - spacing[2] / 2, mid + spacing[2] / 2
    shape, opt_affine = aligned_grid(mri.shape, aff, spacing, (lo, hi))
    opt_grid = resample_optical(opt, osp, o2m, shape, opt_affine)
    opt_first = (opt_affine[:3, 3] - aff[:3, 3]) @ np.linalg.inv(lin).T * vox + offset
    meta = {
        "frame": "RAS" if ras else "mri_grid",
        "units": "millimeter",
        "mri_affine": aff.tolist(),
        "optical_to_mri": o2m.tolist(),
        "optical_native_spacing_um": osp.tolist(),
        "optical_grid_affine": opt_affine.tolist(),
        "axis_order_on_disk": "zyx (arrays are [x, y, z] in dualmode)",
    }
    if os.path.isdir(path):  # zarr folders cannot be replaced atomically over a non-empty one
        import shutil

        shutil.rmtree(path)
    with atomic_path(path) as tmp:
        root = zarr.open_group(tmp, mode="w")
        for name, arr, sp, first in (("mri", mri, vox, offset), ("optical", opt_grid, spacing, opt_first)):
            pyr, transforms = _pyramid(arr, sp, first, levels)
            group = root.create_group(name)
            with warnings.catch_warnings():  # translation needs explicit transforms (deprecated API)
                warnings.simplefilter("ignore", DeprecationWarning)
                write_multiscale(pyr, group, axes=AXES, coordinate_transformations=transforms, name=name)
        root.attrs["dualmode"] = json.loads(json.dumps(meta))
    return meta
