"""Shared fixtures: small simulated acquisition folders and their processed outputs."""

import pytest

from dualmode.simulate import SimulationConfig, simulate_folder


@pytest.fixture(scope="session")
def sim2d(tmp_path_factory):
    """The issue's reference folder: seed 7, background 10x the particle signal, SNR 20."""
    folder = tmp_path_factory.mktemp("acq") / "seed7"
    truth = simulate_folder(folder, SimulationConfig(seed=7, background_ratio=10.0, snr=20.0))
    assert truth["particles"]
    return str(folder)


@pytest.fixture(scope="session")
def demo_batch(tmp_path_factory):
    """A small batch for the viewer tests: ``demo`` (2D, modulated optics, registered) and ``nomatch``
    (the stage placement is 2 mm off: registration fails with a 2-pair best hypothesis).
    Returns ``(out_root, summary, acquisitions_root)``."""
    import json

    from dualmode.batch import run_batch

    root = tmp_path_factory.mktemp("demo_batch")
    acq = root / "acquisitions"
    simulate_folder(acq / "demo", SimulationConfig(seed=7, background_ratio=10.0, snr=20.0, rotation_deg=20.0,
                                                   optical_frames=8))
    simulate_folder(acq / "nomatch", SimulationConfig(seed=3, n_particles=6, particles_outside_optics=0))
    manifest = json.loads((acq / "nomatch" / "acquisition.json").read_text())
    manifest["optics"]["placement"]["center_mm"][0] += 2.0
    manifest["optics"]["placement"]["uncertainty_mm"] = 0.5
    (acq / "nomatch" / "acquisition.json").write_text(json.dumps(manifest))
    summary = run_batch([str(acq / "demo"), str(acq / "nomatch")], str(root / "out"), workers=1)
    return root / "out", summary, acq
