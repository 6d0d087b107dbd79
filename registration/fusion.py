"""Fused two-channel volume (13C MRI, fluorescence) on one grid.

Grids share the MRI axes (orientation) and cover the MRI field of view:
``"mri"`` is the MRI grid itself, ``"optical"`` uses the optical pixel size in-plane
(and the optical z step for a z-stack, the MRI z voxel otherwise), a number or
3-sequence is a user spacing in mm. Each modality is resampled once, with
Gaussian anti-aliasing when the target voxel is coarser than the source
(:func:`.resample.resample_optical`, :func:`.resample.resample_image`).
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import apply_affine, voxel_sizes

from .resample import choose_sampler, resample_image, resample_optical


def aligned_grid(mri_shape, mri_affine, spacing_mm, box_mm=None) -> tuple[tuple, np.ndarray]:
    """A grid with the MRI axes and voxel ``spacing_mm`` covering the MRI field (or ``box_mm``).

    ``box_mm`` is ``(lo, hi)`` in the MRI grid frame (mm along the array axes from the
    centre of voxel 0); by default the MRI field ``[-vox/2, (n - 1/2) vox]``.
    Returns ``(shape, affine)``.
    """
    mri_affine = np.asarray(mri_affine, float)
    vox = voxel_sizes(mri_affine)
    sp = np.broadcast_to(np.asarray(spacing_mm, float), (3,)).copy()
    if np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"grid spacing must be positive mm, got {spacing_mm!r}")
    if box_mm is None:
        lo, hi = -vox / 2, (np.asarray(mri_shape) - 0.5) * vox
    else:
        lo, hi = (np.asarray(b, float) for b in box_mm)
    shape = np.maximum(1, np.round((hi - lo) / sp).astype(int))
    if np.prod(shape.astype(float)) > 2e9:
        raise ValueError(f"fusion grid {tuple(shape)} is too large; choose a coarser spacing")
    first = (lo + hi) / 2 - (shape - 1) / 2 * sp  # centre the grid on the box
    axes = mri_affine[:3, :3] / vox
    affine = np.eye(4)
    affine[:3, :3] = axes * sp
    affine[:3, 3] = apply_affine(mri_affine, first / vox)
    return tuple(int(n) for n in shape), affine


def _grid_spacing(grid, mri_shape, mri_affine, optical):
    vox = voxel_sizes(mri_affine)
    if isinstance(grid, str):
        if grid == "mri":
            return None
        if grid == "optical":
            osp = np.asarray(optical.spacing_um, float) * 1e-3
            z = osp[2] if optical.data.shape[2] > 1 and mri_shape[2] > 1 else vox[2]
            return np.array([osp[0], osp[1], z])
        raise ValueError(f"grid must be 'mri', 'optical' or a spacing in mm, got {grid!r}")
    sp = np.broadcast_to(np.asarray(grid, float), (3,)).copy()
    if mri_shape[2] == 1:
        sp[2] = vox[2]
    return sp


def fuse(
    mri_image: np.ndarray,
    mri_affine: np.ndarray,
    optical,
    optical_to_mri: np.ndarray,
    *,
    grid="mri",
    sampler: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel fused volume ``fused[x, y, z, c]``: c = 0 13C ``|H|``, c = 1 fluorescence.

    Parameters
    ----------
    mri_image : (I, J, K) ndarray
    mri_affine : (4, 4) ndarray
        Voxel -> RAS mm.
    optical : dualmode.io.OpticalImage
    optical_to_mri : (4, 4) ndarray
        Optical um -> RAS mm (e.g. ``register(...).optical_to_mri``).
    grid : "mri", "optical", float or sequence of 3 float
        Target grid: the MRI grid, optical resolution over the MRI field, or a spacing
        in mm (a 2D MRI keeps its slice thickness).
    sampler : {"scipy", "itk"} or None
        Who interpolates (:func:`.resample.resample_optical`); None: by the grid's size.

    Returns
    -------
    fused : (X, Y, Z, 2) float32 ndarray
        Fluorescence is zero outside the optical field.
    affine : (4, 4) ndarray
        Voxel -> RAS mm of the fused grid.

    Examples
    --------
    A 2 mm x 2 mm fluorescence field (100 x 100 pixels of 20 µm) on a 0.2 mm MRI grid:

    >>> import numpy as np
    >>> from dualmode.conventions import mri_affine
    >>> from dualmode.io import OpticalImage
    >>> mri = np.zeros((32, 32, 1), np.float32)
    >>> optics = OpticalImage(np.ones((100, 100, 1), np.float32), (20.0, 20.0, 50.0))
    >>> optical_to_mri = np.diag([1e-3, 1e-3, 1e-3, 1.0])   # µm -> mm, no rotation
    >>> fused, affine = fuse(mri, mri_affine((32, 32, 1), (6.4, 6.4, 1.0)), optics, optical_to_mri)
    >>> fused.shape, int((fused[..., 1] > 0.5).sum())       # 10 x 10 voxels of fluorescence
    ((32, 32, 1, 2), 100)
    """
    img = np.asarray(mri_image, np.float32)
    mri_affine = np.asarray(mri_affine, float)
    if img.ndim != 3:
        raise ValueError(f"MRI image must be [i, j, k], got shape {img.shape}")
    shape, affine = fusion_grid(img.shape, mri_affine, optical, grid)
    same = shape == tuple(img.shape) and np.array_equal(affine, mri_affine)
    mri_on_grid = img if same else resample_image(img, mri_affine, shape, affine, sampler=sampler)
    opt = resample_optical(optical.data, optical.spacing_um, optical_to_mri, shape, affine, sampler=sampler)
    return np.stack([mri_on_grid, opt], axis=-1).astype(np.float32), affine


def fusion_grid(mri_shape, mri_affine: np.ndarray, optical, grid="mri") -> tuple[tuple, np.ndarray]:
    """``(shape, affine)`` of the fused grid :func:`fuse` uses for ``grid``."""
    sp = _grid_spacing(grid, tuple(mri_shape), np.asarray(mri_affine, float), optical)
    if sp is None:
        return tuple(int(n) for n in mri_shape), np.asarray(mri_affine, float)
    return aligned_grid(mri_shape, mri_affine, sp)


def optical_native_grid(mri_image_shape, mri_affine: np.ndarray, optical, optical_to_mri: np.ndarray,
                        sampler: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The optical image resampled once onto a grid with the MRI axes at its own pixel size.

    The grid covers the optical field (a plane becomes one MRI-thick slice through it),
    so the fluorescence keeps its resolution while sharing the MRI axes, as OME-Zarr
    scale + translation transforms require.

    Parameters
    ----------
    mri_image_shape : sequence of 3 int
    mri_affine : (4, 4) ndarray
        MRI voxel -> RAS mm.
    optical : dualmode.io.OpticalImage
    optical_to_mri : (4, 4) ndarray
        Optical um -> RAS mm.
    sampler : {"scipy", "itk"} or None
        Who interpolates (:func:`.resample.resample_optical`); None: by the grid's size.

    Returns
    -------
    image : (X, Y, Z) float32 ndarray
    affine : (4, 4) ndarray
        Grid voxel -> RAS mm (axes of ``mri_affine``).
    """
    shape, grid_affine = native_grid(mri_image_shape, mri_affine, optical, optical_to_mri)
    image = resample_optical(optical.data, optical.spacing_um, optical_to_mri, shape, grid_affine, sampler=sampler)
    return image, grid_affine


def native_grid(mri_image_shape, mri_affine: np.ndarray, optical, optical_to_mri: np.ndarray
                ) -> tuple[tuple, np.ndarray]:
    """``(shape, affine)`` of the grid :func:`optical_native_grid` uses."""
    aff = np.asarray(mri_affine, float)
    o2m = np.asarray(optical_to_mri, float)
    field = np.shape(optical.data)
    vox = voxel_sizes(aff)
    lin = aff[:3, :3]
    osp = np.asarray(optical.spacing_um, float)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in field], indexing="ij")).reshape(3, -1).T * osp
    world = corners @ o2m[:3, :3].T + o2m[:3, 3]
    p = (world - aff[:3, 3]) @ np.linalg.inv(lin).T * vox
    half = osp * 1e-3 / 2
    lo, hi = p.min(0) - half, p.max(0) + half
    spacing = np.array([osp[0], osp[1], osp[2] if field[2] > 1 else vox[2] * 1e3]) * 1e-3
    if field[2] == 1:  # a plane: one slice through it
        mid = (lo[2] + hi[2]) / 2
        lo[2], hi[2] = mid - spacing[2] / 2, mid + spacing[2] / 2
    return aligned_grid(mri_image_shape, aff, spacing, (lo, hi))


def fuse_folder(mri_image: np.ndarray, mri_affine: np.ndarray, optical, optical_to_mri: np.ndarray, grid="mri"):
    """A folder's three fusion products with one sampler (:func:`.resample.choose_sampler` of their
    grids: SciPy when all are small, else ITK for all): ``(fused, affine)`` of :func:`fuse`, the
    optics on the MRI grid, and ``(image, affine)`` of :func:`optical_native_grid`."""
    shape = np.shape(mri_image)
    sampler = choose_sampler(shape, fusion_grid(shape, mri_affine, optical, grid)[0],
                             native_grid(shape, mri_affine, optical, optical_to_mri)[0])
    fused, fused_affine = fuse(mri_image, mri_affine, optical, optical_to_mri, grid=grid, sampler=sampler)
    on_mri = fused[..., 1] if grid == "mri" else resample_optical(
        optical.data, optical.spacing_um, optical_to_mri, shape, mri_affine, sampler=sampler)
    native = optical_native_grid(shape, mri_affine, optical, optical_to_mri, sampler=sampler)
    return (fused, fused_affine), on_mri, native
