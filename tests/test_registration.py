"""Particle detection, point fitting, matching and registration against known transforms."""

import numpy as np
import pytest

from dualmode.conventions import apply_affine, voxel_sizes
from dualmode.registration import (
    RegistrationError,
    detect_mri_particles,
    detect_optical_particles,
    fit_points,
    leave_one_out_tre,
    register,
)
from dualmode.simulate import matching_precision_recall, true_tre
from dualmode.simulate import make_pair, rotation_z
from scipy.spatial import cKDTree


def _true_tre_vox(pair, reg, planar):
    """Error (MRI voxels) of the estimated transform at the true optical particle positions."""
    tre = true_tre(reg.optical_to_mri, pair.optical_to_mri, pair.optical_xyz_um, planar=planar)
    return tre / voxel_sizes(pair.mri_affine)[:2].min()


def _transform(angle, mirrored, t, scale=1e-3):
    aff = np.eye(4)
    aff[:3, :3] = scale * rotation_z(angle, mirrored, tilt_deg=2.0)
    aff[:3, 3] = t
    return aff


@pytest.mark.parametrize("mirrored", [False, True])
def test_fit_points_recovers_rigid_and_similarity(mirrored):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 5000, (12, 3))
    truth = _transform(37.0, mirrored, [1.0, -2.0, 0.5])
    dst = apply_affine(truth, src)
    aff, rms = fit_points(src, dst, model="rigid", scale=1e-3)
    assert np.allclose(aff, truth, atol=1e-9) and rms < 1e-9
    assert (np.linalg.det(aff[:3, :3]) < 0) == mirrored
    aff, _ = fit_points(src, apply_affine(np.diag([1.02, 1.02, 1.02, 1]), dst), model="similarity", scale=1e-3)
    assert np.cbrt(abs(np.linalg.det(aff[:3, :3]))) == pytest.approx(1.02e-3, rel=1e-6)
    # weights: a wild outlier with ~zero weight does not move the fit
    bad = dst.copy()
    bad[0] += 5.0
    w = np.ones(len(src))
    w[0] = 1e-9
    aff, _ = fit_points(src, bad, w, scale=1e-3, mirror=mirrored)
    assert np.allclose(aff, truth, atol=1e-6)


def test_fit_points_planar_keeps_z_axis_and_mirror():
    rng = np.random.default_rng(2)
    src = np.c_[rng.uniform(0, 4000, (10, 2)), np.zeros(10)]
    truth = np.eye(4)
    truth[:3, :3] = 1e-3 * rotation_z(-120.0, True)
    truth[:3, 3] = [3.0, 1.0, 0.75]
    dst = apply_affine(truth, src)
    dst[:, 2] += rng.normal(0, 0.05, 10)  # particle depth spread in the MRI
    aff, _ = fit_points(src, dst, planar=True, scale=1e-3)
    assert np.allclose(aff[:2, :2], truth[:2, :2], atol=1e-12)
    assert aff[2, 2] == pytest.approx(1e-3) and np.linalg.det(aff[:3, :3]) < 0
    assert aff[2, 3] == pytest.approx(dst[:, 2].mean())


def test_leave_one_out_tre_scales_with_noise():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 5000, (15, 3))
    truth = _transform(10.0, False, [0.0, 0.0, 0.0])
    dst = apply_affine(truth, src)
    assert np.nanmax(leave_one_out_tre(src, dst)) < 1e-9
    sigma = 0.02
    noisy = dst + rng.normal(0, sigma, dst.shape)
    tre = leave_one_out_tre(src, noisy)
    # LOO error of a held-out point is about sqrt(3) sigma (its own noise plus fit error)
    assert 0.5 * np.sqrt(3) * sigma < np.median(tre) < 2.5 * np.sqrt(3) * sigma
    assert np.all(np.isnan(leave_one_out_tre(src[:3], dst[:3])))


def test_detect_mri_particles_subvoxel():
    pair = make_pair(5, n_particles=60, snr=20.0, outlier_fraction=0.0)
    found = detect_mri_particles(pair.mri_image, pair.mri_affine, pair.noise_sigma)
    vox = voxel_sizes(pair.mri_affine)
    d, idx = cKDTree(pair.mri_xyz_mm[:, :2]).query(found.xyz[:, :2])
    assert len(found) >= 0.95 * len(pair.mri_xyz_mm)
    assert np.sum(d > vox[0]) <= 2  # no noise detections
    assert np.median(d) / vox[0] < 0.15
    assert 10 < np.median(found.snr) < 40
    assert np.all((found.confidence >= 0) & (found.confidence <= 1))
    # pure noise: nothing
    rng = np.random.default_rng(0)
    noise = np.abs(rng.normal(size=(64, 64, 1)) + 1j * rng.normal(size=(64, 64, 1)))
    assert len(detect_mri_particles(noise, pair.mri_affine, 1.0)) == 0


def test_detect_optical_particles_positions_and_depth_confidence():
    pair = make_pair(6, mri_matrix=(32, 32, 32), mri_fov_mm=(8.0, 8.0, 8.0), optical_shape=(300, 300, 20),
                     optical_spacing_um=(15.0, 15.0, 40.0), n_particles=60, slab_mm=0.8,
                     outlier_fraction=0.0, brightness=800.0)
    found = detect_optical_particles(pair.optical_data, pair.spacing_um, diameter_um=200.0)
    d, idx = cKDTree(pair.optical_xyz_um).query(found.xyz)
    assert len(found) >= 0.6 * len(pair.optical_xyz_um)
    assert np.median(d) < 15.0  # um, one pixel
    good = d < 50
    depth = pair.optical_xyz_um[idx[good], 2]
    conf = found.confidence[good]
    # deeper particles are more scattered: lower confidence on average
    shallow, deep = conf[depth < np.median(depth)], conf[depth >= np.median(depth)]
    assert shallow.mean() > deep.mean()


def _register(pair, offset_mm=(1.2, -0.8, 0.0), **kw):
    centre = pair.center_mm + np.asarray(offset_mm)
    return register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, center_mm=centre,
                    uncertainty_mm=2.5, **kw)


@pytest.mark.parametrize("angle,mirrored,shift", [
    (0.0, False, (0.0, 0.0, 0.0)),
    (30.0, False, (3.5, -2.5, 0.0)),
    (-25.0, True, (-3.0, 3.5, 0.0)),
    (170.0, True, (2.0, 2.0, 0.0)),
])
def test_register_2d_known_transforms(angle, mirrored, shift):
    pair = make_pair(10 + abs(int(angle)), angle_deg=angle, mirrored=mirrored, shift_mm=shift, n_particles=120,
                     snr=20.0, outlier_fraction=0.2)
    reg = _register(pair)
    assert reg.mirrored == mirrored
    assert reg.matched >= 6
    tre = _true_tre_vox(pair, reg, planar=True)
    assert np.median(tre) <= 0.25, (np.median(tre), reg.details)
    assert reg.tre_loo_mm is not None and reg.tre_loo_mm < 0.25 * voxel_sizes(pair.mri_affine)[0]
    # matching precision/recall against the truth
    precision, recall = matching_precision_recall(
        reg.pairs, reg.optical_particles.xyz, reg.mri_particles.xyz, pair.optical_xyz_um, pair.mri_xyz_mm,
        pair.shared, planar=True)
    assert precision >= 0.9
    assert recall >= 0.6  # edge and faint particles may be missed
    assert reg.pairs.shape == (reg.matched, 2) and reg.residuals_mm.shape == (reg.matched,)


def test_register_3d_stack_rigid():
    pair = make_pair(21, mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(300, 300, 20),
                     optical_spacing_um=(15.0, 15.0, 40.0), n_particles=150, slab_mm=1.0, angle_deg=-20.0,
                     mirrored=True, tilt_deg=1.0, shift_mm=(1.5, -1.0, 0.0), brightness=800.0)
    reg = _register(pair, refine=False)
    assert reg.mirrored
    tre = _true_tre_vox(pair, reg, planar=False)
    assert np.median(tre) <= 0.25, (np.median(tre), reg.details)


def test_register_widefield_against_3d_mri():
    pair = make_pair(22, mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(400, 400, 1),
                     optical_spacing_um=(12.0, 12.0, 50.0), n_particles=150, slab_mm=0.6, angle_deg=15.0,
                     shift_mm=(1.0, 1.0, 0.0))
    reg = _register(pair)
    tre = _true_tre_vox(pair, reg, planar=True)
    assert np.median(tre) <= 0.5
    vox = voxel_sizes(pair.mri_affine)
    # z placement from the matched MRI particles: the focal plane within about a voxel
    assert abs(reg.optical_to_mri[2, 3] - pair.optical_to_mri[2, 3]) < 1.5 * vox[2]
    assert reg.details["planar"] and "mattes" in reg.details


def test_register_too_few_particles_is_a_clear_error():
    pair = make_pair(30, n_particles=120)
    blank = pair.optical
    blank.data = np.random.default_rng(0).poisson(100.0, blank.data.shape).astype(np.float32)
    with pytest.raises(RegistrationError, match=r"too few particles.*MRI.*optical"):
        register(pair.mri_image, pair.mri_affine, pair.noise_sigma, blank, center_mm=pair.center_mm)


def test_register_bad_start_is_a_clear_error():
    pair = make_pair(31, n_particles=120, shift_mm=(-3.0, -3.0, 0.0))
    far = pair.center_mm + np.array([7.0, 7.0, 0.0])  # 10 mm off, searched within 1 mm
    with pytest.raises(RegistrationError, match="match"):
        register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, center_mm=far,
                 uncertainty_mm=1.0, refine=False)
    assert issubclass(RegistrationError, ValueError)


def test_register_similarity_recovers_pixel_size_error():
    pair = make_pair(60, angle_deg=40.0, shift_mm=(1.0, 1.0, 0.0), n_particles=120)
    optical = pair.optical
    optical.spacing_um = tuple(s / 1.03 for s in pair.spacing_um)  # pixel size declared 3 % small
    reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, optical, center_mm=pair.center_mm,
                   model="similarity", refine=False)
    scale = np.sqrt(abs(np.linalg.det(reg.optical_to_mri[:2, :2])))
    assert scale == pytest.approx(1.03e-3, rel=0.005)
    o = pair.optical_xyz_um.copy()
    o[:, 2] = 0
    err = apply_affine(reg.optical_to_mri, o / 1.03) - apply_affine(pair.optical_to_mri, o)
    assert np.median(np.linalg.norm(err[:, :2], axis=1)) < 0.25 * voxel_sizes(pair.mri_affine)[0]


def test_register_stack_against_2d_slice():
    pair = make_pair(61, optical_shape=(300, 300, 20), optical_spacing_um=(15.0, 15.0, 40.0), angle_deg=-15.0,
                     shift_mm=(1.0, -1.0, 0.0), n_particles=150, brightness=800.0)
    reg = _register(pair)
    assert reg.details["planar"]
    tre = _true_tre_vox(pair, reg, planar=True)
    assert np.median(tre) <= 0.25
    # the slice passes through the middle of the stack (within a quarter of the slice thickness)
    mid = np.array([0.0, 0.0, np.median(pair.optical_xyz_um[:, 2])])
    assert abs(apply_affine(reg.optical_to_mri, mid)[2] - pair.mri_affine[2, 3]) < 0.4


def test_register_left_handed_mri_affine_and_no_mirror():
    """A left-handed MRI affine (x flipped): 'mirrored' is judged in world coordinates."""
    pair = make_pair(62, angle_deg=10.0, shift_mm=(1.0, 0.0, 0.0), n_particles=120)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = pair.mri_image.shape[0] - 1
    affine = pair.mri_affine @ flip  # index i -> n-1-i, same world positions
    image = pair.mri_image[::-1]
    assert np.linalg.det(affine[:3, :3]) < 0
    reg = register(image, affine, pair.noise_sigma, pair.optical, center_mm=pair.center_mm,
                   allow_mirror=False, refine=False)
    assert not reg.mirrored
    assert np.median(_true_tre_vox(pair, reg, planar=True)) <= 0.25


def test_register_bad_arguments_raise_value_errors():
    pair = make_pair(63, n_particles=60)
    with pytest.raises(ValueError, match="noise_sigma"):
        register(pair.mri_image, pair.mri_affine, 0.0, pair.optical)
    with pytest.raises(ValueError, match=r"\[i, j, k\]"):
        register(pair.mri_image[..., 0], pair.mri_affine, 1.0, pair.optical)
    flat = pair.optical
    flat.data = flat.data[..., 0]
    with pytest.raises(ValueError, match=r"\[x, y, z\]"):
        register(pair.mri_image, pair.mri_affine, 1.0, flat)
    with pytest.raises(RegistrationError, match="0 in the MRI"):
        register(np.zeros_like(pair.mri_image), pair.mri_affine, 1.0, pair.optical)


@pytest.mark.parametrize("dims,per_mm", [(3, 20.0), (3, 40.0), (2, 8.0)])
def test_match_significance_is_conservative_for_a_fixed_hypothesis(dims, per_mm):
    """Chance pairs (Poisson MRI particles, independent optical ones, the identity transform):
    Pr[S >= s] <= 10**-s, the calibration the decoy margin relies on."""
    from dualmode.registration.hypotheses import mutual_nn
    from dualmode.registration.significance import match_significance

    rng = np.random.default_rng(dims)
    tol = np.full(3, 0.15)
    box = np.array([6.0, 6.0, 2.0 if dims == 3 else 1.0])
    sig = []
    for _ in range(400):
        m = rng.uniform(0, box, (rng.poisson(per_mm * np.prod(box[:dims])), 3))
        o = rng.uniform(1000, 5000, (20, 3)) * ([1, 1, 0.25] if dims == 3 else [1, 1, 0])
        pairs, _ = mutual_nn(o * 1e-3, m, tol, dims)
        sig.append(match_significance(np.diag([1e-3, 1e-3, 1e-3, 1.0]), pairs, o, m, tol, dims))
    sig = np.array(sig)
    assert np.mean(sig > 0) > 0.01  # the test exercises chance pairs at all
    for s in (0.5, 1.0, 2.0):
        assert np.mean(sig >= s) <= 10**-s + 3 * np.sqrt(10**-s / len(sig)), s


def test_match_significance_grows_with_pairs_and_tightness():
    from dualmode.registration.significance import significance

    assert significance(np.full(6, 0.3), 10, 0.05, 3) > significance(np.full(6, 0.9), 10, 0.05, 3) + 5
    assert significance(np.full(8, 0.5), 10, 0.05, 3) > significance(np.full(5, 0.5), 10, 0.05, 3)
    assert significance(np.full(6, 0.5), 10, 0.5, 3) < significance(np.full(6, 0.5), 10, 0.05, 3)
    assert significance(np.zeros(0), 10, 0.05, 3) == 0.0
