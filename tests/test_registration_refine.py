"""Mattes-MI refinement: recovers a perturbed transform; the metric prefers the truth."""

import numpy as np
import pytest

from dualmode.conventions import voxel_sizes
from dualmode.registration import grid_frame
from dualmode.simulate import true_tre
from dualmode.simulate import make_pair
from dualmode.registration.refine import fixed_image, mattes_refine, mattes_value

SUB = np.ix_([0, 1, 3], [0, 1, 3])


@pytest.fixture(scope="module")
def setup():
    pair = make_pair(5, angle_deg=20.0, shift_mm=(1.0, 1.0, 0.0), n_particles=120, snr=40.0)
    truth_q = np.linalg.inv(grid_frame(pair.mri_affine)) @ pair.optical_to_mri
    fixed, fsp = fixed_image(pair.mri_image, voxel_sizes(pair.mri_affine), True)
    a = np.deg2rad(2.0)
    perturb = np.array([[np.cos(a), -np.sin(a), 0.12], [np.sin(a), np.cos(a), -0.08], [0.0, 0.0, 1.0]])
    return pair, truth_q, fixed, fsp, perturb @ truth_q[SUB]


def _tre(pair, truth_q, t2d):
    full = truth_q.copy()
    full[SUB] = t2d
    o2m = grid_frame(pair.mri_affine) @ full
    return np.median(true_tre(o2m, pair.optical_to_mri, pair.optical_xyz_um, planar=True))


@pytest.mark.parametrize("model", ["rigid", "similarity"])
def test_mattes_refine_recovers_perturbation(setup, model):
    pair, truth_q, fixed, fsp, start = setup
    before = _tre(pair, truth_q, start)
    refined, info = mattes_refine(fixed, fsp, pair.optical_data[:, :, 0], pair.spacing_um, start, model=model)
    after = _tre(pair, truth_q, refined)
    assert before > 0.2  # mm: about one voxel off
    assert after < 0.3 * voxel_sizes(pair.mri_affine)[0]
    assert info["metric_after"] < info["metric_before"]  # ITK sign: lower is better


def test_mattes_value_prefers_truth(setup):
    pair, truth_q, fixed, fsp, start = setup
    opt = pair.optical_data[:, :, 0]
    assert mattes_value(fixed, fsp, opt, pair.spacing_um, truth_q[SUB]) < mattes_value(
        fixed, fsp, opt, pair.spacing_um, start)
    with pytest.raises(ValueError, match="model"):
        mattes_refine(fixed, fsp, opt, pair.spacing_um, start, model="bspline")


def test_register_runs_mattes_only_when_it_can_help(setup):
    """Many matched particles: the point fit's standard error (the most an accepted refinement may
    move them) is far below 0.1 voxel, so MI is not run and registration.json says why; with the
    acceptance bound widened past 0.1 voxel it runs (and is judged as before)."""
    from dualmode.registration import register
    from dualmode.registration.register import MI_USEFUL_VOXELS

    pair = setup[0]
    reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, center_mm=pair.center_mm)
    info = reg.details["mattes"]
    vox = float(voxel_sizes(pair.mri_affine)[:2].min())
    assert info["skipped"] and not info["accepted"] and "not run" in info["reason"]
    assert reg.matched >= 6 and info["tolerance_mm"] < MI_USEFUL_VOXELS * vox
    assert "mattes" not in reg.method
    wide = 1.5 * MI_USEFUL_VOXELS * vox / info["tolerance_mm"]  # accept_tol that puts the bound past 0.1 voxel
    ran = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, center_mm=pair.center_mm,
                   accept_tol=wide).details["mattes"]
    assert "skipped" not in ran and "metric_after" in ran
