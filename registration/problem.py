"""The registration problem: detected particles in the MRI grid frame, the search space
(tolerance per axis, coarse placement and orientation, scale bounds) and the mirror states."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualmode.conventions import apply_affine, voxel_sizes

from .hypotheses import SearchSpace
from .orientation import search_mode
from .particles import Particles, detect_mri_particles, detect_optical_particles
from .result import RegistrationError, grid_frame


@dataclass
class Problem:
    """Everything the steps share (grid-frame MRI particles ``m``, optical um ``o``)."""

    img: np.ndarray
    vox: np.ndarray
    frame: np.ndarray
    data: np.ndarray
    spacing: np.ndarray
    mode: str
    mri_p: Particles
    opt_p: Particles
    m: np.ndarray
    o: np.ndarray
    space: SearchSpace
    mirrors: tuple
    opts: dict

    @property
    def planar(self) -> bool:
        return self.mode != "3d"

    @property
    def plane_image(self) -> np.ndarray:
        return self.data[:, :, 0] if self.data.shape[2] == 1 else self.data.max(axis=2)


def _check_args(img, aff, data, model):
    if img.ndim != 3 or aff.shape != (4, 4):
        raise ValueError(f"need an [i, j, k] MRI image and a 4x4 affine, got {img.shape}, {aff.shape}")
    if data.ndim != 3:
        raise ValueError(f"optical data must be [x, y, z], got {data.shape}")
    if model not in ("rigid", "similarity", "affine"):
        raise ValueError(f"model must be 'rigid', 'similarity' or 'affine', got {model!r}")


def _detect(img, aff, noise_sigma, data, spacing, opts):
    """Particles in both modalities, the ``max_particles`` best of each."""
    mri_p = detect_mri_particles(img, aff, noise_sigma, min_snr=opts["min_snr"])
    opt_p = detect_optical_particles(data, spacing, diameter_um=opts["diameter_um"], min_snr=opts["min_snr"],
                                     mri_voxel_mm=voxel_sizes(aff))
    if len(mri_p) < 3 or len(opt_p) < 3:
        raise RegistrationError(
            f"too few particles to register: {len(mri_p)} in the MRI, {len(opt_p)} in the optical "
            f"image (need >= 3 in each; check min_snr={opts['min_snr']}, diameter_um={opts['diameter_um']})")
    n = opts["max_particles"]
    keep_m = np.argsort(-mri_p.snr, kind="stable")[:n]
    keep_o = np.argsort(-opt_p.snr * opt_p.confidence, kind="stable")[:n]
    return mri_p.subset(np.sort(keep_m)), opt_p.subset(np.sort(keep_o))


def _tolerance(tol_mm, vox):
    """Per grid axis: ``tol_mm`` (one number or three), default ``max(0.6 voxel, 0.1 mm)``."""
    if tol_mm is None:
        return np.maximum(0.6 * vox, 0.1)
    tol = np.broadcast_to(np.asarray(tol_mm, float), (3,)).copy()
    if not np.all(np.isfinite(tol) & (tol > 0)):
        raise ValueError(f"tol_mm must be positive, got {tol_mm!r}")
    return tol


def _search_space(p_img, vox, frame, data, spacing, mode, opts) -> SearchSpace:
    to_grid = np.linalg.inv(frame)
    o_centre = (np.array(data.shape) - 1) / 2 * spacing
    if mode != "3d":
        o_centre[2] = 0.0
    center, unc = None, np.inf
    if opts["center_mm"] is not None:
        center = apply_affine(to_grid, np.asarray(opts["center_mm"], float))
        unc = float(opts["uncertainty_mm"])
    prior = None
    if opts["orientation"] is not None:
        prior = to_grid[:3, :3] @ np.asarray(opts["orientation"], float)
        prior = prior / np.linalg.norm(prior, axis=0)
    tol = _tolerance(opts["tol_mm"], vox)
    bound = opts["max_scale_error"]
    return SearchSpace(tol=tol, scale=1e-3, center=center, optical_center=o_centre, uncertainty=unc,
                       prior=prior, prior_deg=float(opts["orientation_uncertainty_deg"]),
                       model="similarity" if opts["model"] != "rigid" else "rigid",
                       scale_bounds=(1e-3 * (1 - bound), 1e-3 * (1 + bound)), planar=mode != "3d")


def prepare(mri_image, mri_affine, noise_sigma, optical, opts) -> Problem:
    img = np.asarray(mri_image, float)
    aff = np.asarray(mri_affine, float)
    data = np.asarray(optical.data, np.float32)  # detection and refinement work in float32
    _check_args(img, aff, data, opts["model"])
    spacing = np.asarray(optical.spacing_um, float)
    vox = voxel_sizes(aff)
    mode = search_mode(data.shape[2] == 1, img.shape[2] == 1)
    mri_p, opt_p = _detect(img, aff, noise_sigma, data, spacing, opts)
    frame = grid_frame(aff)
    m = apply_affine(np.linalg.inv(frame), mri_p.xyz)
    o = opt_p.xyz.copy()
    if mode != "3d":
        o[:, 2] = 0.0
    space = _search_space(img, vox, frame, data, spacing, mode, opts)
    # mirror states in the grid frame; a left-handed MRI affine swaps what "mirrored" means in world
    world_flip = bool(np.linalg.det(frame[:3, :3]) < 0)
    mirrors = (False, True) if opts["allow_mirror"] else (world_flip,)
    if space.prior is not None and space.prior_deg < 180:
        mirrors = (bool(np.linalg.det(space.prior) < 0),)
    return Problem(img, vox, frame, data, spacing, mode, mri_p, opt_p, m, o, space, mirrors, opts)
