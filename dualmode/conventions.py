"""The conventions of dualmode, decided once, here.

Every module that touches axes, coordinates, units or Fourier transforms uses
the functions of this module instead of re-deriving them. ``docs/conventions.md``
explains the same rules with pictures in words; tests/test_conventions.py pins them.

Array axis order
    An image array is indexed ``[i, j, k]`` (plus trailing channel or leading
    repetition/coil axes where documented), exactly like ``nibabel``'s
    ``img.dataobj``: axis 0 is the NIfTI ``i`` (x) axis. 2D data keep a length-1
    third axis, so every volume is 3D. SimpleITK arrays (``[k, j, i]``) and
    TIFF/OME pages (``[z, y, x]``) are converted at the I/O boundary only.

World coordinates
    MRI world is RAS+ in millimetres (NIfTI). Optical physical coordinates are
    micrometres, with the origin at the centre of the first pixel and axes along
    the array axes (x = axis 0, y = axis 1, z = axis 2). An *affine* is the 4x4
    matrix mapping ``(i, j, k, 1)`` of a voxel centre to world coordinates.
    ITK/SimpleITK/``.tfm`` files are LPS: :func:`ras_to_lps` converts.

Fourier transforms and k-space
    ``fft_centered(x) = fftshift(fftn(ifftshift(x)))`` along the encoding axes,
    unnormalised (forward DFT ``y_k = sum_x f(x) exp(-2 pi i k x / N)`` with both
    ``k`` and ``x`` running over ``-N/2 ... N/2-1``), and ``ifft_centered`` its
    inverse (factor ``1/N``). Array index ``N // 2`` is ``k = 0`` in k-space and
    ``x = 0`` in image space. Non-Cartesian coordinates are in cycles per field of
    view, ``k in [-N/2, N/2)``; ``coords[..., d]`` pairs with image axis ``d``.

MRI geometry
    ``position_mm`` is the RAS world position of the voxel at index ``N // 2``
    along every axis (the DFT origin ``x = 0``), ``orientation`` the 3x3 matrix
    whose columns are the RAS unit vectors of array axes ``i, j, k``, and
    ``fov_mm / matrix`` the voxel size. See :func:`mri_affine`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

#: Flip of the first two axes between RAS (NIfTI) and LPS (ITK/DICOM).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

UM_PER_MM = 1000.0

#: Axis order of image arrays everywhere in dualmode.
AXIS_ORDER = ("x", "y", "z")


def fft_centered(x: np.ndarray, axes=(-3, -2, -1), workers: int | None = None) -> np.ndarray:
    """Centred, unnormalised forward DFT: image -> k-space.

    ``y[k] = sum_x f[x] exp(-2 pi i k.x / N)`` with ``k, x`` in ``-N/2 .. N/2-1``
    and array index ``N // 2`` at 0. Same sign and scale as :func:`numpy.fft.fftn`.
    """
    axes = tuple(axes)
    return scipy.fft.fftshift(
        scipy.fft.fftn(scipy.fft.ifftshift(x, axes=axes), axes=axes, workers=workers), axes=axes
    )


def ifft_centered(k: np.ndarray, axes=(-3, -2, -1), workers: int | None = None) -> np.ndarray:
    """Inverse of :func:`fft_centered` (includes the ``1/N`` factor): k-space -> image."""
    axes = tuple(axes)
    return scipy.fft.fftshift(
        scipy.fft.ifftn(scipy.fft.ifftshift(k, axes=axes), axes=axes, workers=workers), axes=axes
    )


def mri_affine(
    matrix, fov_mm, position_mm=(0.0, 0.0, 0.0), orientation=None
) -> np.ndarray:
    """4x4 voxel-index -> RAS mm affine of an MRI grid.

    Parameters
    ----------
    matrix : sequence of 3 int
        Grid size ``(Ni, Nj, Nk)``; 2D data have ``Nk = 1``.
    fov_mm : sequence of 3 float
        Field of view along each array axis; for 2D the third entry is the slice thickness.
    position_mm : sequence of 3 float
        RAS position of voxel ``(Ni//2, Nj//2, Nk//2)`` (the DFT origin).
    orientation : (3, 3) array_like, optional
        Columns are the RAS unit vectors of array axes i, j, k. Identity by default.

    Returns
    -------
    affine : (4, 4) ndarray
        ``world = R @ diag(voxel) @ (ijk - N//2) + position``.
    """
    matrix = np.asarray(matrix, dtype=int)
    fov = np.asarray(fov_mm, dtype=float)
    if matrix.shape != (3,) or fov.shape != (3,):
        raise ValueError("matrix and fov_mm need 3 entries (use 1 and the slice thickness for 2D)")
    if np.any(matrix < 1) or np.any(~np.isfinite(fov)) or np.any(fov <= 0):
        raise ValueError(f"absurd geometry: matrix={matrix.tolist()}, fov_mm={fov.tolist()}")
    rot = np.eye(3) if orientation is None else np.asarray(orientation, dtype=float)
    if rot.shape != (3, 3) or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-4):
        raise ValueError("orientation must be a 3x3 matrix with orthonormal columns")
    voxel = fov / matrix
    lin = rot @ np.diag(voxel)
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = np.asarray(position_mm, dtype=float) - lin @ (matrix // 2)
    return affine


def optical_affine(spacing_um) -> np.ndarray:
    """4x4 pixel-index -> optical physical micrometres: origin at the first pixel centre."""
    spacing = np.asarray(spacing_um, dtype=float)
    if spacing.shape != (3,) or np.any(~np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"optical pixel size must be 3 positive numbers in um, got {spacing_um!r}")
    return np.diag([*spacing, 1.0])


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Length of each column of the affine's linear part (voxel size in world units)."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (..., 3)."""
    pts = np.asarray(points, dtype=float)
    return pts @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def ras_to_lps(matrix4: np.ndarray) -> np.ndarray:
    """Express a 4x4 that outputs RAS points as one that outputs LPS points (left-multiply)."""
    return RAS_TO_LPS @ np.asarray(matrix4, dtype=float)


def sitk_geometry(affine: np.ndarray):
    """Split a RAS affine into SimpleITK ``(origin, spacing, direction)`` in LPS.

    SimpleITK arrays are ``[k, j, i]``; pair with ``np.transpose(array)``.
    """
    lps = ras_to_lps(affine)
    spacing = voxel_sizes(lps)
    direction = lps[:3, :3] / spacing
    return tuple(lps[:3, 3]), tuple(spacing), tuple(direction.ravel())
