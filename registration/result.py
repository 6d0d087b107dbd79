"""Result and error types of :func:`dualmode.registration.register`, and the MRI grid frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dualmode.conventions import voxel_sizes

from .particles import Particles


class RegistrationError(ValueError):
    """Registration impossible (too few particles or no match better than chance).

    ``best`` is the best rejected hypothesis (``None`` if there was none): a dict with
    ``optical_to_mri`` (4x4, um -> RAS mm), ``matched``, ``pairs``, ``mirrored``, ``label``,
    ``rms_mm``, ``decoy_matches``, ``searched`` and the detected particle positions
    (``mri_xyz_mm``, ``optical_xyz_um``), for a QC figure of the failure.
    """

    def __init__(self, message: str, best: dict | None = None):
        super().__init__(message)
        self.best = best


@dataclass(repr=False)
class Registration:
    """Result of :func:`register`.

    ``optical_to_mri`` maps optical um to MRI RAS mm. ``metric`` is the weighted
    RMS residual (mm, in-plane for widefield) of the matched particles under the
    final transform. ``pairs[:, 0]`` index ``optical_particles``, ``pairs[:, 1]``
    ``mri_particles``. ``scale`` is the fitted optical pixel-size factor (1.0: the
    file's pixel size is right); ``warnings`` lists what a user should check.
    """

    optical_to_mri: np.ndarray
    method: str
    metric: float
    matched: int
    pairs: np.ndarray
    residuals_mm: np.ndarray
    mirrored: bool
    mri_particles: Particles
    optical_particles: Particles
    tre_loo_mm: float | None
    details: dict = field(default_factory=dict)
    scale: float = 1.0
    warnings: list = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Registration({self.method}, matched={self.matched}, mirrored={self.mirrored}, "
                f"scale={self.scale:.4f}, tre_loo_mm={self.tre_loo_mm})")


def grid_frame(affine: np.ndarray) -> np.ndarray:
    """4x4 mapping MRI grid-frame mm (along the array axes, origin voxel 0) to RAS mm."""
    affine = np.asarray(affine, float)
    return affine @ np.diag([*(1.0 / voxel_sizes(affine)), 1.0])
