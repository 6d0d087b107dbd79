"""Trajectory generators (ranges, shapes, ordering), Poisson-disc masks and density
compensation (radial Shepp-Logan reconstruction with known ground truth)."""

import math

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from dualmode.conventions import fft_centered
from dualmode.recon.dcf import pipe_menon_dcf, ramp_dcf
from dualmode.recon.nufft import NUFFTPlan, nufft
from dualmode.recon.trajectory import (
    GOLDEN_ANGLE, golden_angle_radial, mask_coords, poisson_disc_mask, radial_3d,
    variable_density_spiral,
)


def test_golden_angle_radial():
    c = golden_angle_radial(7, 64, (32, 48))
    assert c.shape == (7, 64, 2)
    norm = c / np.array([32, 48])
    assert np.all(np.abs(norm) <= 0.5 + 1e-12)
    # sample n_readout // 2 is the centre, spacing 1/n_readout of the FOV-normalised k
    np.testing.assert_allclose(c[:, 32], 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.diff(norm, axis=1), axis=-1), 1 / 64)
    angles = np.arctan2(norm[:, -1, 1], norm[:, -1, 0]) % np.pi
    np.testing.assert_allclose(angles, (np.arange(7) * GOLDEN_ANGLE) % np.pi, atol=1e-12)
    assert math.isclose(math.degrees(GOLDEN_ANGLE), 111.246, abs_tol=1e-3)


def test_radial_3d_kooshball():
    c = radial_3d(400, 32, (16, 16, 16))
    assert c.shape == (400, 32, 3)
    r = np.linalg.norm(c, axis=-1)
    assert r.max() <= 8 + 1e-9
    directions = c[:, 0] / r[:, 0, None]
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1)
    # golden means spread the spokes evenly over the hemisphere: mean direction ~ (0, 0, -1/2)
    # (sample 0 is at -k_max), and every octant of the hemisphere gets ~1/4 of the spokes
    np.testing.assert_allclose(directions.mean(0), [0, 0, -0.5], atol=0.02)
    quad = np.histogram2d(np.sign(directions[:, 0]), np.sign(directions[:, 1]), bins=2)[0]
    np.testing.assert_allclose(quad / 400, 0.25, atol=0.03)


def test_variable_density_spiral():
    c = variable_density_spiral(8, 3000, (64, 64), density_power=2.0)
    assert c.shape == (8, 3000, 2)
    r = np.linalg.norm(c, axis=-1)
    assert r.max() < 32 and r[:, 0].max() == 0
    # denser centre: more samples inside half the radius than the area ratio (1/4) suggests
    assert np.mean(r < 16) > 0.5
    # interleaves are rotations of each other
    rot = 2 * np.pi / 8
    rotated = c[0] @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]])
    np.testing.assert_allclose(rotated, c[1], atol=1e-9)


@pytest.mark.parametrize("accel", [3.0, 6.0])
def test_poisson_disc_mask(accel):
    shape = (96, 80)
    mask = poisson_disc_mask(shape, accel, calib=(16, 12), seed=3)
    assert mask.shape == shape and mask.dtype == bool
    assert abs(mask.size / mask.sum() - accel) / accel < 0.03
    assert mask[48 - 8:48 + 8, 40 - 6:40 + 6].all()
    # variable density: the central quarter is sampled more densely than the periphery
    centre = mask[24:72, 20:60]
    periphery = mask.sum() - centre.sum()
    assert centre.mean() > 1.5 * periphery / (mask.size - centre.size)
    # same seed, same mask; another seed, another mask
    assert np.array_equal(mask, poisson_disc_mask(shape, accel, calib=(16, 12), seed=3))
    assert not np.array_equal(mask, poisson_disc_mask(shape, accel, calib=(16, 12), seed=4))


def test_poisson_disc_no_two_samples_too_close():
    """Outside the calibration box, neighbours respect the minimum radius at the centre."""
    mask = poisson_disc_mask((64, 64), 8.0, calib=(0, 0), density_slope=0.0, seed=1)
    pts = np.argwhere(mask)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    d[np.diag_indices_from(d)] = np.inf
    # uniform density at R=8: spacing ~ sqrt(8); the Poisson disc never packs closer than 2
    assert d.min() >= 2.0
    with pytest.raises(ValueError):
        poisson_disc_mask((64, 64), 0.5)


def test_mask_coords_nufft_equals_masked_fft():
    mask = poisson_disc_mask((32, 24), 3.0, calib=(8, 8))
    image = np.random.default_rng(0).standard_normal((32, 24))
    coords = mask_coords(mask)
    y = nufft(image, coords, eps=1e-6)
    np.testing.assert_allclose(y, fft_centered(image, axes=(0, 1))[mask], atol=1e-4)


@pytest.fixture(scope="module")
def radial_problem():
    n = 64
    phantom = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    coords = golden_angle_radial(100, 2 * n, (n, n))
    plan = NUFFTPlan(coords, (n, n))
    return phantom, coords, plan, plan.forward(phantom)


def _nrmse(rec, truth):
    return np.linalg.norm(rec - truth) / np.linalg.norm(truth)


def test_pipe_menon_radial_reconstruction(radial_problem):
    phantom, coords, plan, kdata = radial_problem
    w = pipe_menon_dcf(coords, phantom.shape, plan=plan)
    assert w.shape == coords.shape[:-1] and np.all(w > 0)
    rec = plan.adjoint(w * kdata).real
    err = _nrmse(rec, phantom)  # absolute scale included: w is area / prod(N)
    assert err < 0.1
    # without DCF, even with the best scalar gain, the image is the blurred 1/|k| version
    raw = plan.adjoint(kdata).real
    gain = np.vdot(raw, phantom) / np.vdot(raw, raw)
    assert _nrmse(gain * raw, phantom) > 3 * err


def test_ramp_dcf_matches_pipe_menon(radial_problem):
    phantom, coords, plan, kdata = radial_problem
    wr = ramp_dcf(coords, phantom.shape)
    wp = pipe_menon_dcf(coords, phantom.shape, plan=plan)
    mid = slice(64 + 8, 64 + 56)  # between the centre and the edge of each spoke
    np.testing.assert_allclose(np.median(wp[:, mid] / wr[:, mid]), 1.0, atol=0.05)
    assert _nrmse(plan.adjoint(wr * kdata).real, phantom) < 0.15
    # a full Cartesian grid has weight 1/prod(N): radial ramp mid-spoke weight pi |k| dk / S
    k = np.linalg.norm(coords[0, 100])
    np.testing.assert_allclose(wr[0, 100], np.pi * k * 0.5 / 100 / 64**2, rtol=0.02)


def test_pipe_menon_3d_radial_density_profile():
    coords = radial_3d(300, 32, (16, 16, 16))
    w = pipe_menon_dcf(coords, (16, 16, 16), n_iter=20)
    r = np.linalg.norm(coords, axis=-1)
    sel = (r > 2) & (r < 7)
    # 3D radial density falls like 1/k^2: the weights grow like k^2
    slope = np.polyfit(np.log(r[sel]), np.log(w[sel]), 1)[0]
    assert 1.6 < slope < 2.4
