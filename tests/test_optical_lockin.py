"""Optical lock-in against synthetic modulated frames with Poisson + read noise and photobleaching."""

import numpy as np
import pytest
import scipy.ndimage

from dualmode.recon.optical_lockin import modulation_kind, optical_lockin
from dualmode.recon.schemes import polarization_scheme

N = 32


def scene(seed=0, nv_peak=1500.0, auto_ratio=20.0):
    """NV particles (peak ``nv_peak`` e-) on structured autofluorescence ``auto_ratio`` times brighter."""
    rng = np.random.default_rng(seed)
    x, y = np.mgrid[:N, :N]
    nv = np.zeros((N, N))
    for cx, cy in [(8, 8), (20, 12), (14, 24), (25, 26)]:
        nv += ((x - cx) ** 2 + (y - cy) ** 2 <= 9).astype(float)
    nv = scipy.ndimage.gaussian_filter(nv, 1.0)
    nv *= nv_peak / nv.max()
    auto = scipy.ndimage.gaussian_filter(rng.random((N, N)), 4)
    auto = (auto - auto.min()) / (auto.max() - auto.min())
    auto = auto_ratio * nv_peak * (0.5 + auto)  # mean about auto_ratio x the NV peak
    return nv, auto


def frames_onoff(m, nv, auto, eps=0.1, tau_bleach=300.0, read_noise=3.0, seed=1):
    """Counts: autofluorescence bleaching 60 -> 100 % exp, NV dimmed by eps when modulation is on."""
    rng = np.random.default_rng(seed)
    t = np.arange(m.size)
    bleach = 0.6 + 0.4 * np.exp(-t / tau_bleach)
    expect = auto[None] * bleach[:, None, None] + nv[None] * (1 - eps * m[:, None, None])
    counts = rng.poisson(expect) + rng.normal(0.0, read_noise, expect.shape)
    return counts[..., None], (auto * bleach.mean())[..., None]


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.parametrize("scheme", ["+-", "+--+"])
def test_nv_image_under_20x_autofluorescence(scheme):
    """Autofluorescence 20x NV, 10 % contrast, Poisson + read noise, bleaching: corr(NV, truth) >= 0.9."""
    nv, auto = scene()
    m = (1 + polarization_scheme(scheme, 800 // len(scheme))) / 2
    frames, auto_mean = frames_onoff(m, nv, auto)
    r = optical_lockin(frames, m, nv_contrast=0.1)
    assert corr(r.nv[..., 0], nv) >= 0.9
    assert corr(r.autofluorescence, auto_mean) >= 0.99
    # the raw mean frame is dominated by autofluorescence
    assert corr(frames.mean(axis=0)[..., 0], nv) < 0.5
    assert r.info["tau_frames"] == pytest.approx(300, rel=0.2)
    # NV brightness recovered in its units; modulation depth = 10 % diluted by the autofluorescence
    peak = nv > 0.9 * nv.max()
    assert np.mean(r.nv[..., 0][peak]) == pytest.approx(np.mean(nv[peak]), rel=0.1)
    depth = np.mean(r.contrast[..., 0][peak])
    a = auto_mean[..., 0][peak]
    assert depth == pytest.approx(np.mean(0.1 * nv[peak] / (nv[peak] + a)), rel=0.15)
    # noise map: per-pixel prediction matches the scatter of nv off the particles
    off = (nv < 1e-3 * nv.max())[..., None]
    assert np.std(r.nv[off]) == pytest.approx(np.median(r.noise_map[off]), rel=0.15)


def test_bleaching_regression_needed_for_slow_modulation():
    """Blocks of 40 frames on / 40 off: bleaching leaks into NV unless modelled."""
    nv, auto = scene(seed=2)
    m = (1 + polarization_scheme("+" * 40 + "-" * 40, 10)) / 2
    frames, _ = frames_onoff(m, nv, auto, tau_bleach=200.0, seed=3)
    assert corr(optical_lockin(frames, m, bleaching="exponential", nv_contrast=0.1).nv[..., 0], nv) >= 0.9
    assert corr(optical_lockin(frames, m, bleaching=3).nv[..., 0], nv) >= 0.85
    assert corr(optical_lockin(frames, m, bleaching=None).nv[..., 0], nv) < 0.5


def test_sinusoidal_modulation():
    nv, auto = scene(seed=4)
    rng = np.random.default_rng(5)
    n = 800
    phase = 2 * np.pi * np.arange(n) / 8 + 0.3  # 8 frames per period, known phase
    lag = 0.7  # unknown response delay of the NV modulation
    t = np.arange(n)
    bleach = 0.6 + 0.4 * np.exp(-t / 300.0)
    expect = auto[None] * bleach[:, None, None] + nv[None] * (1 - 0.05 * (1 + np.cos(phase - lag))[:, None, None])
    frames = (rng.poisson(expect) + rng.normal(0, 3.0, expect.shape))[..., None]
    assert modulation_kind(phase) == "sinusoidal"
    r = optical_lockin(frames, phase)
    assert corr(r.nv[..., 0], nv) >= 0.9
    # amplitude eps/2 * N = 0.05 N, phase = lag + pi (fluorescence dips when the drive peaks)
    peak = nv > 0.9 * nv.max()
    assert np.mean(r.nv[..., 0][peak]) == pytest.approx(0.05 * np.mean(nv[peak]), rel=0.15)
    assert np.angle(np.exp(1j * (r.info["modulation_phase_rad"] - lag - np.pi))) == pytest.approx(0, abs=0.1)


def test_bad_input():
    with pytest.raises(ValueError):
        optical_lockin(np.zeros((4, 3, 3, 1)), [1, 1, 1, 1])
    with pytest.raises(ValueError):
        optical_lockin(np.zeros((4, 3, 3)), [1, 0, 1, 0])
    with pytest.raises(ValueError):
        optical_lockin(np.zeros((4, 3, 3, 1)), [1, 0, 1])


def test_plus_minus_states_and_no_contrast_given():
    """States given as +1/-1; without the NV contrast, nv is the modulated amplitude (epsilon N)."""
    nv, auto = scene(seed=6)
    s = polarization_scheme("+--+", 200)
    frames, auto_mean = frames_onoff((1 + s) / 2, nv, auto, seed=7)
    r = optical_lockin(frames, s, bleaching=2)
    assert r.info["kind"] == "onoff" and r.info["model"] == "polynomial"
    peak = nv > 0.9 * nv.max()
    assert np.mean(r.nv[..., 0][peak]) == pytest.approx(0.1 * np.mean(nv[peak]), rel=0.1)
    # unmodulated = off-state baseline: autofluorescence + NV brightness
    np.testing.assert_allclose(r.unmodulated[..., 0], auto_mean[..., 0] + nv, rtol=0.02)
