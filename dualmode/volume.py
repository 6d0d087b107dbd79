"""An image with its geometry: ``Volume(data, affine)``, the nibabel idea in two fields.

``data`` is indexed ``[x, y, z(, c)]`` and ``affine`` maps voxel indices to RAS mm
(:mod:`dualmode.conventions`), exactly as in a NIfTI file, so a volume converts to and
from ``nibabel`` without loss of geometry.

Examples
--------
>>> import numpy as np
>>> from dualmode.volume import Volume
>>> v = Volume(np.zeros((4, 4, 1), np.float32), np.diag([0.2, 0.2, 1.0, 1.0]))
>>> v
Volume(shape=(4, 4, 1), dtype=float32, voxel_mm=(0.2, 0.2, 1.0))
>>> v.to_nifti().shape
(4, 4, 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dualmode.conventions import voxel_sizes


@dataclass(frozen=True, repr=False, eq=False)
class Volume:
    """A voxel array ``data[x, y, z(, c)]`` and its voxel -> RAS mm ``affine`` (4, 4)."""

    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        if np.ndim(self.data) < 3:
            raise ValueError(f"data must be [x, y, z(, c)], got shape {np.shape(self.data)}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.data))

    @property
    def voxel_mm(self) -> np.ndarray:
        """Voxel size along each array axis (mm)."""
        return voxel_sizes(self.affine)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)

    def __repr__(self) -> str:
        vox = tuple(round(float(v), 4) for v in self.voxel_mm)
        return f"Volume(shape={self.shape}, dtype={np.asarray(self.data).dtype}, voxel_mm={vox})"

    def to_nifti(self):
        """A ``nibabel.Nifti1Image`` with sform = qform = ``affine`` (code 1, scanner), mm units."""
        import nibabel as nib

        img = nib.Nifti1Image(np.asarray(self.data), self.affine)
        img.set_sform(self.affine, code=1)
        img.set_qform(self.affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        return img

    @classmethod
    def from_nifti(cls, image_or_path: str | os.PathLike | object) -> Volume:
        """Load a NIfTI file (or take a nibabel image) as a :class:`Volume`."""
        import nibabel as nib

        img = image_or_path if hasattr(image_or_path, "affine") else nib.load(os.fspath(image_or_path))
        return cls(np.asarray(img.dataobj), np.asarray(img.affine, float))
