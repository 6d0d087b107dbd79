"""Optics-guided (planned) acquisition: the plan files, the support test, the whole folder path."""

import json

import numpy as np
import pytest

from dualmode.recon.optics_prior import choose_kspace_samples, support_mask
from dualmode.recon.planned import reconstruct_planned


def _points_kspace(coords, pos, amp, n):
    """Analytic k-space of point sources at sub-voxel positions (no dualmode transform)."""
    x = (np.asarray(pos, float) - n // 2) / n
    return np.exp(-2j * np.pi * coords @ x.T) @ np.asarray(amp)


def _scene(seed, n=48, n_particles=8):
    rng = np.random.default_rng(seed)
    flat = rng.choice((n - 12) ** 2, n_particles, replace=False)  # on voxel centres: exact on the grid
    pos = np.stack(np.unravel_index(flat, (n - 12, n - 12)), axis=1).astype(float) + 6
    amp = rng.uniform(0.6, 1.4, n_particles) * np.exp(1j * rng.uniform(-0.3, 0.3, n_particles))
    return rng, pos, amp


@pytest.mark.parametrize("hidden", [0, 1])
def test_support_test_flags_a_missed_source_and_not_a_correct_support(hidden):
    """Ten noise draws each: a source outside the support is flagged every time, a correct one never."""
    n, flagged = 48, 0
    for seed in range(10):
        rng, pos, amp = _scene(seed, n)
        seen = pos[hidden:]  # the optics misses the first `hidden` sources
        optical = seen + rng.uniform(-0.25, 0.25, seen.shape)  # registration error
        support = support_mask((n, n, 1), optical, dilation=1.5)
        coords = choose_kspace_samples(support, int(1.6 * support.sum()))
        extra = np.random.default_rng(seed).choice(n * n, 16, replace=False)
        check = (np.stack(np.unravel_index(extra, (n, n)), axis=1) - n // 2).astype(float)
        allk = np.concatenate([coords, check])
        fit = np.r_[np.ones(len(coords), bool), np.zeros(len(check), bool)]
        sigma = 0.3
        y = _points_kspace(allk, pos, amp, n) + sigma * (rng.standard_normal(len(allk))
                                                         + 1j * rng.standard_normal(len(allk)))
        res = reconstruct_planned(y, allk, support, sigma, fit=fit)
        flagged += res.flagged
        if not hidden:
            est = res.image[pos[:, 0].astype(int), pos[:, 1].astype(int), 0]
            assert np.linalg.norm(est - amp) / np.linalg.norm(amp) < 0.1
        else:
            assert res.fallback and res.stats["fallback_added_sources"]
    assert flagged == (10 if hidden else 0)


def _simulate(tmp_path, name, **kw):
    """A planned folder; the particles' k-space is the analytic transform of spheres (simulator default)."""
    from dualmode.simulate import SimulationConfig, simulate_folder

    cfg = SimulationConfig(**{"trajectory": "planned", **kw})
    folder = tmp_path / name
    truth = simulate_folder(folder, cfg)
    return folder, truth


def test_plan_command_writes_plan_trajectory_and_encsteps(tmp_path):
    from dualmode.cli import main
    from dualmode.io.ismrmrd_io import read_ismrmrd
    from dualmode.plan import plan_coords, plan_support, read_plan

    folder, _ = _simulate(tmp_path, "acq", matrix=48, n_particles=5, particles_outside_optics=0,
                          acceleration=8, seed=3)
    reg = tmp_path / "registration.json"
    truth = json.loads((folder / "truth.json").read_text())
    reg.write_text(json.dumps({"optical_to_mri": truth["optical_to_mri"]}))
    assert main(["plan", str(folder), "--registration", str(reg), "--samples", "300", "-o", str(tmp_path / "p")]) == 0
    plan = read_plan(tmp_path / "p" / "plan.json")
    coords = plan_coords(plan)
    assert len(coords) == 300 == plan["n_fit"] + plan["n_check"] and len(np.unique(coords, axis=0)) == 300
    assert plan["design"]["condition_number"] < 5 and plan_support(plan).sum() == plan["support"]["n_voxels"]
    traj = read_ismrmrd(tmp_path / "p" / "plan_trajectory.h5")  # the ISMRMRD reader sees the same samples
    np.testing.assert_allclose(traj.coords[:, :2], coords, atol=1e-6)
    steps = (tmp_path / "p" / "plan_encsteps.txt").read_text().split("##$PVM_EncSteps1=( 300 )")[1]
    np.testing.assert_array_equal(np.array(steps.split("##END=")[0].split(), int), coords[:, 1])
    # placement only: the support covers the placement uncertainty and the budget cannot fit it
    assert main(["plan", str(folder), "--acceleration", "8", "-o", str(tmp_path / "q")]) == 1


def _amplitude_nrmse(report, truth, affine):
    """NRMSE of the fitted particle amplitudes against the truth's integrated amplitudes (nearest particle)."""
    from dualmode.conventions import apply_affine

    fitted = report["planned"]["tests"]["particles"]
    pos = np.asarray(fitted["position_voxel"], float)
    pos = np.c_[pos, np.zeros(len(pos))] if pos.shape[1] == 2 else pos
    true_mm = np.array([q["mri_xyz_mm"] for q in truth["particles"]])
    ref = np.array([q["amplitude"] for q in truth["particles"]])
    est = np.zeros(len(ref))
    for a, p in zip(fitted["amplitude"], apply_affine(affine, pos)):
        est[np.argmin(np.linalg.norm(true_mm - p, axis=1))] += a
    return float(np.linalg.norm(est - ref) / np.linalg.norm(ref))


def test_planned_folder_end_to_end_r20(tmp_path):
    """Issue 17: --trajectory planned --acceleration 20, 10 particles -> NRMSE <= 0.1 and a fused volume."""
    from dualmode.pipeline import process_folder

    folder, truth = _simulate(tmp_path, "acq", n_particles=10, particles_outside_optics=0, acceleration=20, seed=2)
    res = process_folder(folder, tmp_path / "out")
    assert res.report["planned"]["status"] == "ok" and not res.report.get("flags")
    assert res.report["planned"]["acceleration"] > 19.9
    assert res.ok and (tmp_path / "out" / "acq" / "fused.nii.gz").exists()
    assert res.report["registration"]["tre_loo_voxels"] < 0.5
    assert _amplitude_nrmse(res.report, truth, res.c13.affine) <= 0.1


def test_particle_hidden_from_optics_is_flagged_in_every_seed(tmp_path):
    """One particle outside the optical field (seen by MRI only): flagged in 10 of 10 seeds."""
    from dualmode.io import load_acquisition
    from dualmode.pipeline import PipelineOptions, planned_sampling, reconstruct_planned_folder

    def flagged(seed, hidden):
        folder, _ = _simulate(tmp_path, f"s{seed}h{hidden}", matrix=48, n_particles=6, particles_outside_optics=hidden,
                              acceleration=10, diameter_um=(200.0, 300.0), seed=seed)
        acq = load_acquisition(folder)
        return reconstruct_planned_folder(acq, planned_sampling(acq), PipelineOptions())[2]["flagged"]

    hidden = [flagged(seed, 1) for seed in range(10)]
    assert all(hidden), hidden
    control = [flagged(seed, 0) for seed in range(4)]  # the same scenes with every particle in view
    assert not any(control), control


def test_voxel_support_cannot_hold_analytic_particles_and_says_so(tmp_path):
    """Spheres off the voxel grid ring beyond any compact voxel support: the voxel model leaves
    several % of the energy unexplained and is flagged; the particle model explains the same data."""
    from dualmode.io import load_acquisition
    from dualmode.pipeline import PipelineOptions, planned_sampling, reconstruct_planned_folder
    from dualmode.plan import plan_coords, plan_support, read_plan
    from dualmode.recon.planned import lockin_kspace, planned_sample_weights

    folder, _ = _simulate(tmp_path, "a", matrix=48, n_particles=6, particles_outside_optics=0, acceleration=10,
                          diameter_um=(200.0, 300.0), seed=1)
    acq = load_acquisition(folder)
    assert reconstruct_planned_folder(acq, planned_sampling(acq), PipelineOptions())[2]["status"] == "ok"
    plan, h = read_plan(planned_sampling(acq)), acq.kspace.header
    coords = plan_coords(plan)
    lk = lockin_kspace(acq.kspace.data, acq.polarization, coords, h.matrix)
    g = planned_sample_weights(len(coords), h.flip_angle_deg, int(np.prod(h.matrix)), tr_ms=h.tr_ms)
    res = reconstruct_planned(lk.y_signal, coords, plan_support(plan), lk.sigma, sample_weights=g,
                              fit=~np.asarray(plan["check"]), sigma_dof=lk.sigma_dof)
    assert res.flagged and res.stats["unexplained_fraction"] > 0.01
