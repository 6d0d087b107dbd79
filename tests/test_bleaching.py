"""Autofluorescence photobleaching in the simulated modulated frames, and what the optical lock-in leaves of it.

Two folders with the same seed differ only in the autofluorescence's bleaching time (20 frames
against none): the NV centres are photostable, so the lock-in NV images must agree within noise.
"""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from dualmode.io import load_acquisition
from dualmode.recon.optical_lockin import optical_lockin
from dualmode.simulate import SimulationConfig, simulate_folder

KW = dict(seed=3, n_particles=6, particles_outside_optics=0, optical_field_mm=3.0, optical_frames=40,
          autofluorescence=2.0, matrix=32, fov_mm=6.4)
TAU = 20.0


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    out = {}
    for name, tau in (("bleached", TAU), ("stable", 1e9)):
        folder = tmp_path_factory.mktemp(name)
        simulate_folder(folder, SimulationConfig(autofluorescence_bleach_frames=tau, **KW))
        optics = load_acquisition(folder).optics
        out[name] = (optics.frames.astype(float), optics.states)
    return out


def test_autofluorescence_bleaches_with_the_stated_time_constant(frames):
    f, s = frames["bleached"]
    trace = f.reshape(len(s), -1).mean(axis=1)
    (a, tau, b, c), _ = curve_fit(lambda t, a, tau, b, c: a * np.exp(-t / tau) + b + c * s,
                                  np.arange(len(s)), trace, p0=[trace[0], 10.0, 0.0, 1.0])
    assert tau == pytest.approx(TAU, rel=0.05)
    # the unbleached folder's trace only alternates (NV on/off): no decay
    g, _ = frames["stable"]
    stable = g.reshape(len(s), -1).mean(axis=1)
    assert abs(np.polyfit(np.arange(len(s)), stable, 1)[0]) < 0.01 * abs(a) / TAU


def test_lock_in_cancels_the_bleaching_nv_is_unchanged(frames):
    (fb, s), (fn, _) = frames["bleached"], frames["stable"]
    auto = fn.mean(axis=0)[..., 0]
    rb, rn = optical_lockin(fb, s), optical_lockin(fn, s)
    diff = (rb.nv - rn.nv)[..., 0]
    assert abs(np.corrcoef(diff.ravel(), auto.ravel())[0, 1]) < 0.05  # no autofluorescence left in NV
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)
    assert diff.std() < 1.3 * np.hypot(rb.noise_sigma, rn.noise_sigma)  # the difference is noise
    assert rb.info["tau_frames"] == pytest.approx(TAU, rel=0.1)
    # without a bleaching regressor the decay leaks into the NV image in proportion to the autofluorescence
    leak = (optical_lockin(fb, s, bleaching=None).nv - optical_lockin(fn, s, bleaching=None).nv)[..., 0]
    assert np.corrcoef(leak.ravel(), auto.ravel())[0, 1] > 0.3
