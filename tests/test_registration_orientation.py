"""Registration in any orientation (issue 13): 3D stacks in every rotation and reflection,
widefield optics along each MRI axis, the coarse-orientation prior and failures that say why.

The full sweep (24 axis-aligned orientations x mirror, 20 random rotations, ...) is
``python -m benchmarks.registration_sweep``; these are a representative subset."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dualmode.conventions import voxel_sizes
from dualmode.registration import RegistrationError, register
from dualmode.registration.hypotheses import SearchSpace
from dualmode.registration.triplets import match_particles_3d
from dualmode.simulate import make_pair, true_tre

CUBE = Rotation.create_group("O").as_matrix()  # the 24 axis-aligned proper rotations
MIRROR_Z = np.diag([1.0, 1.0, -1.0])
STACK = dict(mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(300, 300, 20),
             optical_spacing_um=(15.0, 15.0, 40.0), n_particles=150, slab_mm=1.0, shift_mm=(1.0, -0.5, 0.3),
             brightness=800.0)


def _tre_vox(pair, reg, planar=False):
    tre = true_tre(reg.optical_to_mri, pair.optical_to_mri, pair.optical_xyz_um, planar=planar)
    return float(np.median(tre)) / voxel_sizes(pair.mri_affine).min()


def test_triplet_matcher_finds_any_rotation_and_reflection():
    rng = np.random.default_rng(4)
    for trial in range(4):
        o = rng.uniform(0, 3000, (30, 3)) * [1, 1, 0.3]
        rot = Rotation.random(random_state=trial).as_matrix() @ (MIRROR_Z if trial % 2 else np.eye(3))
        m = o @ rot.T * 1e-3 + 5.0 + rng.normal(0, 0.02, (30, 3))
        m = np.r_[m[6:], rng.uniform(0, 10, (20, 3))]  # 6 optical-only, 20 MRI-only particles
        best = max((c for c in match_particles_3d(o, m, SearchSpace(tol=0.1)).values() if c),
                   key=lambda c: len(c.pairs))
        assert best.mirrored == bool(trial % 2)
        assert len(best.pairs) == 24
        assert np.abs(best.transform[:3, :3] - 1e-3 * rot).max() < 3e-5


@pytest.mark.parametrize("index,mirrored", [(0, True), (7, False), (13, True), (22, False)])
def test_stack_in_axis_aligned_orientations(index, mirrored):
    rot = CUBE[index] @ (MIRROR_Z if mirrored else np.eye(3))
    pair = make_pair(100 + index, rotation=rot, **STACK)
    reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, refine=False)
    assert reg.mirrored == mirrored
    assert _tre_vox(pair, reg) <= 0.25, reg.details
    assert reg.details["mode"] == "3d" and "all 3D rotations" in reg.details["searched"]


def test_stack_in_a_random_rotation_with_the_orientation_prior():
    rot = Rotation.random(random_state=7).as_matrix()
    pair = make_pair(107, rotation=rot, **STACK)
    coarse = Rotation.from_matrix(rot) * Rotation.from_euler("z", 12, degrees=True)
    reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, refine=False,
                   orientation=coarse.as_matrix(), orientation_uncertainty_deg=20.0)
    assert _tre_vox(pair, reg) <= 0.25
    assert "within 20 deg of placement.orientation" in reg.details["searched"]
    # a prior that excludes the truth fails with a message that says what was searched
    wrong = (Rotation.from_matrix(rot) * Rotation.from_euler("x", 90, degrees=True)).as_matrix()
    with pytest.raises(RegistrationError, match="within 20 deg of placement.orientation") as err:
        register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, refine=False,
                 orientation=wrong, orientation_uncertainty_deg=20.0)
    assert "manifest field that would help" in str(err.value)


def test_failure_exposes_the_best_rejected_hypothesis():
    pair = make_pair(31, n_particles=120, shift_mm=(-3.0, -3.0, 0.0))
    far = pair.center_mm + np.array([7.0, 7.0, 0.0])
    with pytest.raises(RegistrationError) as err:
        register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, center_mm=far,
                 uncertainty_mm=1.0, refine=False)
    msg = str(err.value)
    assert "in-plane rotations about the MRI slice normal" in msg and "decoy" in msg
    best = err.value.best
    assert best is not None and np.asarray(best["optical_to_mri"]).shape == (4, 4)
    assert best["matched"] < best["decoy_matches"] + 3
    assert len(best["mri_xyz_mm"]) > 0 and len(best["optical_xyz_um"]) > 0
