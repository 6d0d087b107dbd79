"""Truth-free lock-in metrics checked against synthetic data whose truth is known."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.ndimage

from dualmode.recon.metrics import (
    optical_metrics, optical_panels, optical_regions, signflip_metrics, signflip_panels, signflip_regions,
)
from dualmode.recon.optical_lockin import optical_lockin
from dualmode.recon.schemes import polarization_scheme
from dualmode.recon.signflip import signflip_combine

N = 40


def mri_truth():
    x, y = np.mgrid[:N, :N]
    h = sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.2**2)) for cx, cy in [(8, 8), (10, 30), (30, 8)])
    b = np.zeros((N, N), complex)
    b[20:38, 18:38] = 10 * np.exp(0.5j)
    return h[..., None], b[..., None]


def mri_shots(s, sigma=0.02, seed=0, asym=0.1, dphi_deg=20.0):
    rng = np.random.default_rng(seed)
    h, b = mri_truth()
    c = (1 + asym * s) * np.exp(1j * np.where(s > 0, 0.0, np.deg2rad(dphi_deg)))
    noise = sigma * (rng.standard_normal((s.size,) + h.shape) + 1j * rng.standard_normal((s.size,) + h.shape))
    return (s * c)[:, None, None, None] * h + b + noise


@pytest.fixture(scope="module")
def mri():
    s = polarization_scheme("+--+", 2)
    imgs = mri_shots(s)
    return s, imgs, signflip_combine(imgs, s)


def test_signflip_metrics_prove_suppression(mri):
    s, imgs, r = mri
    m = signflip_metrics(imgs, s, r)
    json.dumps(m, allow_nan=False)  # strict JSON
    assert abs(m["residual_background_sigma"]) <= 1.5
    assert m["noise_limited"] is True
    # background energy: |B|^2 = 100 before, noise floor 2 sigma_H^2 after
    assert m["background_energy_before"] == pytest.approx(100, rel=0.05)
    assert m["background_energy_after"] == pytest.approx(2 * r.noise_sigma**2, rel=0.2)
    assert m["background_suppression_db"] > 40
    assert m["cnr_before"] < 0 < 20 < m["cnr_after"]  # background outshines the particles before
    assert m["signal_to_background_after"] > 100 * m["signal_to_background_before"]
    assert m["noise_sigma_H"] == pytest.approx(0.02 / np.sqrt(s.size), rel=0.1)
    c_plus, c_minus = 1.1, 0.9 * np.exp(1j * np.deg2rad(20))
    assert m["h_component_in_background"]["abs"] == pytest.approx(abs(c_plus - c_minus) / 2, abs=0.02)
    assert m["scheme"]["cancelled_drift_order"] == 1


def test_regions_match_truth(mri):
    _, _, r = mri
    h, b = mri_truth()
    reg = signflip_regions(r)
    true_bg = (np.abs(b) > 0) & (h < 1e-3)
    assert np.all(h[reg["signal"]] > 0.01)  # no false detection (5 sigma_H = 0.035)
    assert np.all(true_bg[reg["background_only"]])
    assert reg["background_only"].sum() > 0.8 * (true_bg & ~reg["signal_zone"]).sum()
    assert not np.any(reg["empty"] & (np.abs(b) > 0))


def test_residual_metric_detects_leak(mri):
    """A combination that leaves 3 % of B in H must be flagged (the metric can fail)."""
    s, imgs, r = mri
    _, b = mri_truth()
    leaky = dataclasses.replace(r, signal=(r.signal + 0.03 * b).astype(np.complex64))
    m = signflip_metrics(imgs, s, leaky)
    assert m["residual_background_sigma"] > 10
    assert m["noise_limited"] is False
    assert m["background_leak_fraction"]["abs"] == pytest.approx(0.03, abs=0.003)
    assert m["background_leak_sigma"] > 10
    assert signflip_metrics(imgs, s, r)["background_leak_sigma"] < 1.5


def test_signflip_panels(mri):
    s, imgs, r = mri
    p = signflip_panels(imgs, s, r)
    assert list(p) == ["S+", "S-", "H", "B"]
    assert all(v.shape == (N, N) for v in p.values())
    h, b = mri_truth()
    assert np.abs(p["H"] - np.abs(r.signal[..., 0])).max() == 0
    assert np.abs(p["B"] - np.abs(b[..., 0])).max() < 0.3  # + the documented H-shaped leak


def test_optical_metrics_and_panels():
    rng = np.random.default_rng(3)
    x, y = np.mgrid[:N, :N]
    nv = scipy.ndimage.gaussian_filter(sum(((x - cx) ** 2 + (y - cy) ** 2 <= 9).astype(float)
                                           for cx, cy in [(10, 10), (28, 14), (18, 30)]), 1.0)
    nv *= 1500 / nv.max()
    auto = 30000 * (0.5 + scipy.ndimage.gaussian_filter(rng.random((N, N)), 4) * 4)
    m = (1 + polarization_scheme("+--+", 150)) / 2
    expect = auto[None] + nv[None] * (1 - 0.1 * m[:, None, None])
    frames = (rng.poisson(expect) + rng.normal(0, 3, expect.shape))[..., None]
    r = optical_lockin(frames, m, nv_contrast=0.1, bleaching=None)
    met = optical_metrics(frames, r)
    json.dumps(met, allow_nan=False)
    assert met["improvement_db"] > 10
    assert met["cnr_after"] > 5 * max(met["cnr_before"], 1e-3)
    reg = optical_regions(r)
    p = reg["particles"][..., 0]
    off_state = auto + nv
    assert met["autofluorescence_fraction"] == pytest.approx(1 - nv[p].sum() / off_state[p].sum(), abs=0.02)
    assert np.all(nv[reg["particles"][..., 0]] > 0.05 * nv.max())
    panels = optical_panels(frames, r)
    assert list(panels) == ["mean frame", "NV lock-in", "autofluorescence", "modulation depth"]
    assert all(v.shape == (N, N) for v in panels.values())


def test_metrics_of_minimal_result(mri):
    """A SignFlipResult built by other code (only the four required fields) still gives strict JSON."""
    from dualmode.recon.signflip import SignFlipResult

    s, imgs, r = mri
    minimal = SignFlipResult(signal=r.signal, background=r.background, shot_weights=r.shot_weights,
                             noise_sigma=r.noise_sigma)
    m = signflip_metrics(imgs, s, minimal)
    json.dumps(m, allow_nan=False)
    assert m["noise_sigma_shot"] is None
    assert abs(m["residual_background_sigma"]) <= 1.5


def test_shift_report_in_metrics():
    s = polarization_scheme("+--+", 2)
    imgs = mri_shots(s, seed=5)
    imgs[2] = np.roll(imgs[2], 1, axis=0)  # one shot moved by one voxel along x
    r = signflip_combine(imgs, s, register=True)
    m = signflip_metrics(imgs, s, r, voxel_size=(0.2, 0.2, 1.0))
    assert m["shot_shifts"]["n_shots_moved"] == 1
    assert m["shot_shifts"]["max_shift_voxels"] == pytest.approx(1.0, abs=0.05)
    assert m["shot_shifts"]["max_shift_mm"] == pytest.approx(0.2, abs=0.01)
    assert abs(m["residual_background_sigma"]) <= 1.5
