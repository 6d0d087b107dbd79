"""Particle detection, point matching, SimpleITK refinement and fusion.

Modules: :mod:`.particles` (detection), :mod:`.orientation` (which orientations are searched),
:mod:`.triplets` (3D: all rotations from congruent particle triangles), :mod:`.matching`
(in-plane: RANSAC over pair invariants), :mod:`.hypotheses` (verification and refinement),
:mod:`.significance` (chance model of a match), :mod:`.tilt` (widefield: tilt and focal plane),
:mod:`.pointfit` (weighted Umeyama, leave-one-out TRE), :mod:`.refine` (Mattes MI),
:mod:`.problem` + :mod:`.register` (the whole procedure), :mod:`.result` (result and error),
:mod:`.resample` (optics on MRI grids, ``.tfm``), :mod:`.fusion` (two-channel volumes).
Synthetic pairs and accuracy helpers live in :mod:`dualmode.simulate`.

Public API: :func:`detect_mri_particles`, :func:`detect_optical_particles`,
:func:`register` (-> :class:`Registration`, raises :class:`RegistrationError`),
:func:`resample_optical`, :func:`write_tfm` / :func:`read_tfm`,
:func:`leave_one_out_tre`, :func:`fit_points`, :func:`fuse`.

The public names are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dualmode.lazy import attach

if TYPE_CHECKING:  # what static tools and readers see; imported lazily below
    from .fusion import aligned_grid, fuse
    from .particles import Particles, detect_mri_particles, detect_optical_particles
    from .pointfit import fit_points, leave_one_out_tre
    from .register import Registration, RegistrationError, grid_frame, register
    from .resample import read_tfm, resample_image, resample_optical, write_tfm

__all__, __getattr__, __dir__ = attach(__name__, __file__)
