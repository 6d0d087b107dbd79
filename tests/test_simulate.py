"""The simulator writes the documented format, and its truth is self-consistent."""

import json
import os

import nibabel as nib
import numpy as np

from dualmode.conventions import apply_affine
from dualmode.io import load_acquisition
from dualmode.recon.cartesian import reconstruct_repetitions
from dualmode.simulate import SimulationConfig, simulate_folder


def test_folder_layout_and_manifest(sim2d):
    for rel in ("acquisition.json", "mri/kspace.h5", "optics/fluorescence.ome.tif", "truth/c13.nii.gz",
                "truth/background.nii.gz", "truth.json"):
        assert os.path.isfile(os.path.join(sim2d, rel)), rel
    acq = load_acquisition(sim2d)
    assert acq.kspace.header.matrix == (64, 64, 1)
    assert acq.polarization.tolist() == [1, -1, 1, -1]
    assert acq.optics.spacing_um == (10.0, 10.0, 50.0)


def test_truth_particles_map_between_frames(sim2d):
    with open(os.path.join(sim2d, "truth.json")) as f:
        truth = json.load(f)
    t = np.array(truth["optical_to_mri"])
    for p in truth["particles"]:
        np.testing.assert_allclose(apply_affine(t, p["optical_xyz_um"]), p["mri_xyz_mm"], atol=1e-3)
    c13 = nib.load(os.path.join(sim2d, "truth", "c13.nii.gz"))
    # every particle centre falls on a voxel with signal in the truth image
    ijk = np.rint(apply_affine(np.linalg.inv(c13.affine), [p["mri_xyz_mm"] for p in truth["particles"]]))
    vals = np.asarray(c13.dataobj)[tuple(ijk.astype(int).T)]
    assert np.all(vals > 0)


def test_one_shot_reconstruction_is_particles_plus_background_within_noise(tmp_path):
    folder = tmp_path / "ideal"
    cfg = SimulationConfig(seed=3, amplitude_asymmetry=0.0, phase_difference_deg=0.0, shot_decay=1.0, snr=50)
    truth = simulate_folder(folder, cfg)
    acq = load_acquisition(folder)
    img = reconstruct_repetitions(acq.kspace)
    # the particles' k-space is analytic, so one shot holds the object at the acquisition's
    # resolution (truth/c13_bandlimited), not its voxel average (truth/c13)
    h = nib.load(folder / "truth" / "c13_bandlimited.nii.gz").get_fdata()
    b = nib.load(folder / "truth" / "background.nii.gz").get_fdata()
    sigma = truth["noise_sigma"]
    half_diff = (img[0] - img[1]) / 2  # ideal shots: exactly H
    phase = np.angle(np.sum(half_diff * h))
    resid = half_diff * np.exp(-1j * phase) - h
    assert abs(np.std(resid.real) / (sigma / np.sqrt(2)) - 1) < 0.15  # only noise is left
    assert abs(np.mean(np.abs((img[0] + img[1]) / 2)[b > 5]) / np.mean(b[b > 5]) - 1) < 0.02


def test_mirror_and_rotation_are_in_the_true_transform(tmp_path):
    truth = simulate_folder(tmp_path / "m", SimulationConfig(seed=1, rotation_deg=30, mirror=True))
    lin = np.array(truth["optical_to_mri"])[:3, :3] * 1000
    assert np.isclose(np.linalg.det(lin), -1)
    assert np.allclose(lin.T @ lin, np.eye(3), atol=1e-9)


def test_3d_folder_has_a_z_stack(tmp_path):
    simulate_folder(tmp_path / "v", SimulationConfig(seed=2, ndim=3, matrix=32, n_particles=6, optical_field_mm=3.0,
                                              optical_z_slices=8))
    acq = load_acquisition(tmp_path / "v")
    assert acq.kspace.header.matrix == (32, 32, 16)
    assert acq.optics.data.shape == (300, 300, 8)


def test_outliers_are_seen_by_one_modality_only(tmp_path):
    truth = simulate_folder(tmp_path / "o", SimulationConfig(seed=4, outliers=0.4, n_particles=12))
    flags = [(p["in_mri"], p["in_optics"]) for p in truth["particles"]]
    assert flags.count((False, True)) == 2 and flags.count((True, False)) == 2
    acq = load_acquisition(tmp_path / "o")
    h = nib.load(tmp_path / "o" / "truth" / "c13.nii.gz")
    ijk = np.rint(apply_affine(np.linalg.inv(h.affine), [p["mri_xyz_mm"] for p in truth["particles"]])).astype(int)
    vals = np.asarray(h.dataobj)[tuple(ijk.T)]
    assert np.all(vals[[not p["in_mri"] for p in truth["particles"]]] == 0)
    assert acq.optics is not None


def test_widefield_3d_has_a_single_optical_plane(tmp_path):
    simulate_folder(tmp_path / "w", SimulationConfig(seed=2, ndim=3, matrix=32, widefield=True, n_particles=6,
                                              optical_field_mm=3.0))
    acq = load_acquisition(tmp_path / "w")
    assert acq.kspace.header.matrix[2] > 1 and acq.optics.data.shape[2] == 1
