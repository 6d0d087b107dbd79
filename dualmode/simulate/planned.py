"""Planned (optics-guided) acquisitions in the simulator: the plan made from the simulated optics.

The plan uses what a user would have: the fluorescence image as written to the folder and
an "earlier registration", the true ``optical_to_mri`` displaced in-plane by
``cfg.plan_registration_error_voxels`` voxels in a random direction. Particles hidden from
the optics (``--particles-outside-optics``, ``--outliers``) are then missing from the support.
The acquisition is single-point imaging restricted to the plan's samples, in its order.
"""

from __future__ import annotations

import os

import numpy as np

from .sampling import Sampling


def simulated_plan(cfg, rng, out_dir, optical_to_mri, matrix, fov) -> dict:
    """Make and write (``out_dir/mri/plan/``) the plan of a simulated planned acquisition."""
    from dualmode.io import read_optical
    from dualmode.plan import make_plan, write_plan

    vox = np.array(fov, float) / np.array(matrix)
    err = cfg.plan_registration_error_voxels * float(np.mean(vox[:2]))
    angle = rng.uniform(0, 2 * np.pi)
    o2m = np.array(optical_to_mri, float)
    o2m[:2, 3] += err * np.array([np.cos(angle), np.sin(angle)])
    optics = read_optical(os.path.join(out_dir, "optics", "fluorescence.ome.tif"))
    plan = make_plan(optics, o2m, {"matrix": list(matrix), "fov_mm": list(fov)},
                     diameter_um=float(np.mean(cfg.diameter_um)),
                     dilation_vox=0.5 + cfg.plan_registration_error_voxels, acceleration=cfg.acceleration,
                     tr_ms=cfg.tr_ms, seed=cfg.seed,
                     source=f"simulated registration error {cfg.plan_registration_error_voxels} voxel")
    plan["simulated_registration_error_mm"] = err
    write_plan(plan, os.path.join(out_dir, "mri", "plan"))
    return plan


def planned_sampling(cfg, plan: dict) -> tuple[Sampling, float, np.ndarray]:
    """``(sampling, flip_deg, signal weight per sample)`` of the plan's single-point excitations.

    The weights (:func:`dualmode.recon.planned.planned_sample_weights`) are relative to a full
    single-point acquisition spending the same polarization (mean weight 1, as ``--trajectory spi``).
    """
    from dualmode.recon.planned import planned_sample_weights

    coords = np.asarray(plan["coords"], float)
    n = len(coords)
    flip = float(plan["excitation"]["flip_angle_deg"])
    smp = Sampling(coords, np.arange(n), np.full(n, cfg.dead_time_ms), cfg.dead_time_ms, n, (n,), "planned",
                   readout_length=1)
    return smp, flip, planned_sample_weights(n, flip, int(np.prod(plan["geometry"]["matrix"])),
                                             tr_ms=cfg.tr_ms)
