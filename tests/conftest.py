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
