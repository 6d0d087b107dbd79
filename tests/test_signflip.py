"""Sign-flip lock-in against synthetic shots with known H, B, drift, asymmetry and motion."""

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from dualmode.recon.displacement import correct_shot_shifts, estimate_shot_shifts, kspace_shift_phase
from dualmode.recon.schemes import (
    cancelled_drift_order, describe_scheme, drift_efficiency, polarization_scheme, scheme_string,
)
from dualmode.recon.signflip import signflip_combine

N = 48


def phantom():
    """Particles H (unit peak), a large sign-invariant background B apart from them, a drift map."""
    x, y = np.mgrid[:N, :N]
    h = np.zeros((N, N))
    for cx, cy in [(10, 10), (12, 36), (36, 12)]:
        h += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
    b = np.zeros((N, N), complex)
    b[26:44, 24:44] = np.exp(0.4j)  # background block, away from the particles
    b[28:34, 8:18] = 0.5  # a second, weaker background patch
    d = np.zeros((N, N))
    d[24:46, 20:46] = 1.0  # drift lives where the background is
    return h[..., None], b[..., None], d[..., None]


def shots(signs, bg_ratio=10.0, asym=0.0, dphi_deg=0.0, drift=0.0, sigma=0.02, seed=0, decay=0.0):
    """S_k = s_k a_k e^{i phi_k} H + bg_ratio B + drift tau_k D + noise (sigma per component)."""
    rng = np.random.default_rng(seed)
    h, b, d = phantom()
    s = np.asarray(signs, float)
    n = s.size
    tau = np.linspace(-1, 1, n)
    amp = (1 + asym * s) * np.exp(-decay * np.arange(n))
    phi = np.where(s > 0, 0.0, np.deg2rad(dphi_deg))
    noise = sigma * (rng.standard_normal((n,) + h.shape) + 1j * rng.standard_normal((n,) + h.shape))
    imgs = (s * amp * np.exp(1j * phi))[:, None, None, None] * h + bg_ratio * b + drift * tau[:, None, None, None] * d
    return imgs + noise


def regions(bg_threshold=0.1):
    h, b, d = phantom()
    far = scipy.ndimage.binary_dilation(h[..., 0] > 1e-3, iterations=2)[..., None]
    background_only = (np.abs(b) > bg_threshold) & ~far
    empty = (np.abs(b) < 1e-9) & (d == 0) & ~far
    return background_only, empty


def residual_sigma(result):
    bg, empty = regions()
    mag = np.abs(result.signal)
    return (mag[bg].mean() - mag[empty].mean()) / result.noise_sigma


def test_schemes_cancel_drift_orders():
    assert scheme_string(polarization_scheme("+--+", 2)) == "+--++--+"
    assert polarization_scheme("abba", 3).size == 12
    assert cancelled_drift_order(polarization_scheme("+-", 4)) == 0
    assert cancelled_drift_order(polarization_scheme("+-+-", 2)) == 0
    assert cancelled_drift_order(polarization_scheme("+--+", 3)) == 1
    assert cancelled_drift_order(polarization_scheme("+--+-++-", 2)) == 2
    assert cancelled_drift_order([1, 1, -1]) == -1
    # one ABBA block is itself a quadratic in time: no separation from a quadratic drift
    assert drift_efficiency(polarization_scheme("+--+", 1), 2) == pytest.approx(0.0, abs=1e-12)
    assert drift_efficiency(polarization_scheme("+--+", 4), 1) == pytest.approx(1.0)
    assert 0.9 < drift_efficiency(polarization_scheme("+-", 4), 1) < 0.99
    assert describe_scheme(polarization_scheme("+--+", 2))["cancelled_drift_order"] == 1
    with pytest.raises(ValueError):
        polarization_scheme("+x-", 1)


def test_two_shots_is_half_difference():
    s = np.array([1.0, -1.0])
    imgs = shots(s, asym=0.1, dphi_deg=20)
    r = signflip_combine(imgs, s)
    np.testing.assert_allclose(r.signal, (imgs[0] - imgs[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(r.background, (imgs[0] + imgs[1]) / 2, atol=1e-4)


@pytest.mark.parametrize("scheme,cycles", [("+-", 4), ("+--+", 2)])
def test_background_asymmetry_phase(scheme, cycles):
    """B/H = 10, +-10 % amplitude asymmetry, 20 deg phase difference: residual <= 1.5 sigma."""
    s = polarization_scheme(scheme, cycles)
    r = signflip_combine(shots(s, bg_ratio=10, asym=0.1, dphi_deg=20, seed=1), s)
    assert abs(residual_sigma(r)) <= 1.5
    # H keeps the particles with the mean polarization |(c+ + c-) / 2|, c+ = 1.1, c- = 0.9 e^{i 20 deg}
    c_plus, c_minus = 1.1, 0.9 * np.exp(1j * np.deg2rad(20))
    h, _, _ = phantom()
    peak = np.abs(r.signal)[h > 0.99].mean()
    assert peak == pytest.approx(abs(c_plus + c_minus) / 2, rel=0.03)
    # the asymmetry (c+ - c-) / 2 leaks into B as an H-shaped component (documented ambiguity), not into H
    leak = np.vdot(h.ravel(), (r.background - 10 * phantom()[1]).ravel()) / np.vdot(h.ravel(), h.ravel())
    assert abs(leak) == pytest.approx(abs(c_plus - c_minus) / 2, abs=0.02)
    # the naive mean of + shots is far from background-free
    naive = np.abs(shots(s, bg_ratio=10, asym=0.1, dphi_deg=20, seed=1)[s > 0].mean(axis=0))
    bg, empty = regions()
    assert (naive[bg].mean() - naive[empty].mean()) / r.noise_sigma > 100


def test_linear_drift_abba():
    s = polarization_scheme("+--+", 3)
    imgs = shots(s, bg_ratio=10, drift=5.0, asym=0.05, dphi_deg=10, seed=2)
    r = signflip_combine(imgs, s)  # drift_order="auto" -> 1 for ABBA
    assert r.drift_order == 1
    assert abs(residual_sigma(r)) <= 1.5
    np.testing.assert_allclose(r.drift[0], 5.0 * phantom()[2], atol=8 * r.background_sigma)
    assert r.info["sign_alignment"] > 0.95
    # the signal weights are orthogonal to 1 and t: B and the drift cancel by construction
    tau = np.linspace(-1, 1, s.size)
    assert abs(r.signal_weights.sum()) < 1e-10 and abs(r.signal_weights @ tau) < 1e-10


def test_linear_drift_alternating_needs_regression():
    """+- leaks a linear drift unless it is regressed out; "auto" detects the drift (and only then)."""
    s = polarization_scheme("+-", 6)
    imgs = shots(s, bg_ratio=10, drift=5.0, seed=3)
    assert abs(residual_sigma(signflip_combine(imgs, s, drift_order=1))) <= 1.5
    auto = signflip_combine(imgs, s)
    assert auto.drift_order == 1 and auto.info["drift_tests"][0]["z"] > 5
    assert abs(residual_sigma(auto)) <= 1.5
    plain = np.abs((imgs * s[:, None, None, None]).mean(axis=0))
    bg, empty = regions()
    _, _, d = phantom()
    assert plain[(d > 0) & bg].mean() - plain[empty].mean() > 10 * 0.02
    # a strong unmodelled drift captures the rank-one fit (the scheme alignment shows it)
    assert signflip_combine(imgs, s, drift_order=0).info["sign_alignment"] < 0.5
    # no drift, decaying and asymmetric polarization: no drift term is added
    assert signflip_combine(shots(s, decay=0.05, asym=0.1, dphi_deg=20, seed=4), s).drift_order == 0


@pytest.mark.parametrize("scheme,cycles,order", [("+-", 4, 0), ("+--+", 3, 1)])
def test_noise_matches_theory(scheme, cycles, order):
    """sigma_H = sigma / sqrt(n_shots) within 10 %, measured and estimated, with a decaying polarization."""
    s = polarization_scheme(scheme, cycles)
    sigma = 0.05
    r = signflip_combine(shots(s, sigma=sigma, seed=4), s, drift_order=order)
    theory = sigma / np.sqrt(s.size)
    _, empty = regions()
    measured = np.std(np.concatenate([r.signal[empty].real, r.signal[empty].imag]))
    assert measured == pytest.approx(theory, rel=0.1)
    assert r.noise_sigma == pytest.approx(theory, rel=0.1)
    assert float(np.median(r.noise_map)) == pytest.approx(theory, rel=0.15)
    assert r.shot_sigma == pytest.approx(sigma, rel=0.1)
    # phase-sensitive output: Gaussian noise of sigma_H, no Rician floor
    ps = r.phase_sensitive()
    assert abs(ps[empty].mean()) < 3 * theory / np.sqrt(empty.sum())
    assert np.std(ps[empty]) == pytest.approx(theory, rel=0.1)


def test_decaying_polarization_and_shot_weights():
    """c_k is recovered up to the unobservable part s_k (beta_0 + beta_1 tau_k + ...) of the drift span."""
    s = polarization_scheme("+--+", 3)
    a = np.exp(-0.05 * np.arange(s.size))
    for order in (0, 1):
        r = signflip_combine(shots(s, decay=0.05, seed=5, sigma=0.01), s, drift_order=order)
        c = r.shot_weights
        basis = np.column_stack([a] + [s * np.linspace(-1, 1, s.size) ** p for p in range(order + 1)])
        coef, *_ = np.linalg.lstsq(basis.astype(complex), c, rcond=None)
        assert np.abs(basis @ coef - c).max() < 0.01
        assert coef[0].real > 0.9 and abs(coef[0].imag) < 0.02
        assert np.mean(c) == pytest.approx(1.0, abs=0.05)  # unit mean polarization (least squares)


def test_estimated_shot_noise_weights_noisy_shot():
    s = polarization_scheme("+--+", 3)
    imgs = shots(s, sigma=0.02, seed=6)
    rng = np.random.default_rng(7)
    imgs[3] += 0.2 * (rng.standard_normal(imgs[3].shape) + 1j * rng.standard_normal(imgs[3].shape))
    plain = signflip_combine(imgs, s)
    weighted = signflip_combine(imgs, s, shot_noise="estimate")
    assert weighted.noise_sigma < 0.6 * plain.noise_sigma
    assert np.argmax(weighted.info["per_shot_sigma"]) == 3


def test_bad_input():
    with pytest.raises(ValueError):
        signflip_combine(np.zeros((3, 4, 4, 1), complex), [1, 1, 1])
    with pytest.raises(ValueError):
        signflip_combine(np.zeros((3, 4, 4, 1), complex), [1, -1])
    with pytest.raises(ValueError):
        signflip_combine(np.zeros((4, 4, 4, 1), complex), [1, -1, 1, -1], drift_order=3)


def test_displacement_detected_and_corrected():
    """Known sub-voxel shifts of some shots: detected within 0.1 voxel, corrected before the lock-in."""
    s = polarization_scheme("+--+", 2)
    imgs = shots(s, bg_ratio=3.0, sigma=0.01, seed=8)
    true = np.zeros((s.size, 3))
    true[2] = (0.4, -0.7, 0.0)
    true[5] = (-1.3, 0.25, 0.0)
    moved = np.stack([scipy.fft.ifftn(scipy.ndimage.fourier_shift(scipy.fft.fftn(im), t)) for im, t in zip(imgs, true)])
    est = estimate_shot_shifts(moved, s)
    np.testing.assert_allclose(est, -true, atol=0.1)
    est_same = estimate_shot_shifts(moved, s, mode="same_sign")
    np.testing.assert_allclose(est_same, -true, atol=0.1)
    fixed = correct_shot_shifts(moved, est)
    assert np.abs(fixed - imgs).max() < 0.1 * np.abs(imgs).max()
    naive = signflip_combine(moved, s)
    corrected = signflip_combine(moved, s, register=True)
    assert abs(residual_sigma(corrected)) <= 1.5 < residual_sigma(naive)
    np.testing.assert_allclose(corrected.shifts, -true, atol=0.1)
    # the same translation as a k-space linear phase
    k = scipy.fft.fftshift(scipy.fft.fftn(scipy.fft.ifftshift(imgs[2])))
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in imgs[0].shape], indexing="ij"), axis=-1)
    phase = kspace_shift_phase(grid, true[2], imgs[0].shape)
    back = scipy.fft.fftshift(scipy.fft.ifftn(scipy.fft.ifftshift(k * phase)))
    np.testing.assert_allclose(back, moved[2], atol=1e-6)


def test_robust_to_flow_voxels():
    """Voxels with a strong sign-invariant signal changing randomly per shot (flow) must not set c_k."""
    s = polarization_scheme("+--+", 3)
    imgs = shots(s, bg_ratio=10, seed=9)
    rng = np.random.default_rng(10)
    flow = 3 * (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size))
    imgs[:, 20:24, 40:44, 0] += flow[:, None, None]
    h, _, _ = phantom()
    robust = signflip_combine(imgs, s)
    plain = signflip_combine(imgs, s, robust=False)
    assert np.abs(robust.shot_weights - 1).max() < 0.1 < np.abs(plain.shot_weights - 1).max()
    assert robust.info["sign_alignment"] > 0.99 > 0.5 > plain.info["sign_alignment"]
    assert np.abs(robust.signal)[h > 0.99].mean() == pytest.approx(1.0, rel=0.03)


def test_volume_3d():
    """True 3D volume (z > 1), textured background: lock-in, noise and a through-plane sub-voxel shift."""
    rng = np.random.default_rng(11)
    shape = (24, 20, 12)
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    h = np.exp(-((x - 8) ** 2 + (y - 10) ** 2 + (z - 5) ** 2) / 3.0)
    texture = scipy.ndimage.gaussian_filter(rng.random(shape), 2.5)
    b = 5.0 * (texture - texture.min()) / np.ptp(texture) * (x > 12)
    s = polarization_scheme("+--+", 2)
    sigma = 0.05
    imgs = s[:, None, None, None] * h + b + sigma * (rng.standard_normal((s.size,) + shape)
                                                      + 1j * rng.standard_normal((s.size,) + shape))
    shift = np.array([0.0, 0.3, -0.6])
    imgs[3] = scipy.fft.ifftn(scipy.ndimage.fourier_shift(scipy.fft.fftn(imgs[3]), shift))
    r = signflip_combine(imgs, s, register=True)
    np.testing.assert_allclose(r.shifts[3], -shift, atol=0.1)
    np.testing.assert_allclose(np.delete(r.shifts, 3, axis=0), 0, atol=0.1)
    assert r.noise_sigma == pytest.approx(sigma / np.sqrt(s.size), rel=0.1)
    bg_only = (b > 1.0) & (h < 1e-4)
    empty = (x < 12) & (h < 1e-4)
    mag = np.abs(r.signal)
    assert abs(mag[bg_only].mean() - mag[empty].mean()) / r.noise_sigma <= 1.5
