"""Coil combination: RSS, SVD, Walsh adaptive (near SNR-optimal on simulated sensitivities), whitening."""

import numpy as np
import pytest

from dualmode.recon.coils import noise_covariance, rss, svd_combine, walsh_combine, walsh_sensitivities, whiten

N, C = 48, 8


def _coils(seed=0):
    x, y = np.meshgrid(np.arange(N) - N / 2, np.arange(N) - N / 2, indexing="ij")
    rho = (((x / 18) ** 2 + (y / 15) ** 2) < 1) * np.exp(1j * 0.4 * x / N)  # object with a phase ramp
    sens = []
    for c in range(C):  # loop-like coils around the object: smooth magnitude and phase
        a = 2 * np.pi * c / C
        cx, cy = 30 * np.cos(a), 30 * np.sin(a)
        mag = 1.0 / (1.0 + ((x - cx) ** 2 + (y - cy) ** 2) / 20.0**2) ** 1.5
        sens.append(mag * np.exp(1j * (0.05 * (x * np.sin(a) - y * np.cos(a)) + 0.7 * c)))
    return rho, np.array(sens)


def _snr(weights, sens, psi):
    """SNR per unit object of the combination sum_c conj(w_c) m_c (noise covariance psi)."""
    sig = np.abs(np.sum(weights.conj() * sens, axis=0))
    noise = np.sqrt(np.einsum("c...,cd,d...->...", weights.conj(), psi, weights).real)
    return sig / noise


def test_rss_and_svd():
    rng = np.random.default_rng(0)
    im = rng.standard_normal((3, 4, 5)) + 1j * rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(rss(im, 0), np.sqrt((np.abs(im) ** 2).sum(0)))
    # constant sensitivities: SVD combination recovers the object up to one complex factor
    obj = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
    s = np.array([1.0, 0.5j, -0.3 + 0.2j])
    comb = svd_combine(s[:, None, None] * obj, coil_axis=0)
    ratio = comb / obj
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-10)
    assert abs(ratio.flat[0]) == pytest.approx(np.linalg.norm(s))


@pytest.mark.parametrize("correlated", [False, True])
def test_walsh_is_near_snr_optimal(correlated):
    rho, sens = _coils()
    rng = np.random.default_rng(1)
    psi = np.eye(C)
    if correlated:
        b = rng.standard_normal((C, C)) * 0.3 + np.eye(C)
        psi = b @ b.T
    chol = np.linalg.cholesky(psi)
    white = (rng.standard_normal((C, N, N)) + 1j * rng.standard_normal((C, N, N))) / np.sqrt(2)
    sigma = 0.02
    m = sens * rho + sigma * np.einsum("cd,d...->c...", chol, white)
    obj = np.abs(rho) > 0
    s_hat = walsh_sensitivities(m, 0, window=7, noise_cov=psi if correlated else None)
    # weights in the acquired (unwhitened) coil space: w = Psi^-H/2 s_hat
    w = np.einsum("dc,d...->c...", np.linalg.inv(chol).conj(), s_hat) if correlated else s_hat
    snr_opt = np.sqrt(np.einsum("c...,cd,d...->...", sens.conj(), np.linalg.inv(psi), sens).real)
    ratio = _snr(w, sens, psi)[obj] / snr_opt[obj]
    assert ratio.mean() > 0.99 and ratio.min() > 0.95
    # RSS-type weights (m / |m|) ignore the noise correlation and lose SNR when it is present
    rss_ratio = _snr(m / rss(m, 0), sens, psi)[obj] / snr_opt[obj]
    if correlated:
        assert rss_ratio.mean() < ratio.mean() - 0.02
    # the combined image keeps the object phase plus the smooth phase of the reference coil
    comb = walsh_combine(m, 0, window=7, noise_cov=psi if correlated else None)
    mw = np.einsum("cd,d...->c...", np.linalg.inv(chol), m) if correlated else m
    ref = int(np.argmax((np.abs(mw) ** 2).sum(axis=(1, 2))))
    sw = np.einsum("cd,d...->c...", np.linalg.inv(chol), sens) if correlated else sens
    d = comb[obj] * np.conj(rho[obj] * sw[ref][obj])
    d /= np.abs(d)
    assert np.abs(np.angle(d * np.conj(np.mean(d)))).max() < 0.3


def test_whitening_gives_unit_covariance():
    rng = np.random.default_rng(3)
    b = rng.standard_normal((4, 4)) + np.eye(4) * 2
    psi = b @ b.T
    noise = np.linalg.cholesky(psi) @ ((rng.standard_normal((4, 20000)) + 1j * rng.standard_normal((4, 20000))) / np.sqrt(2))
    est = noise_covariance(noise, 0)
    np.testing.assert_allclose(est, psi, atol=0.15 * np.abs(psi).max())
    np.testing.assert_allclose(noise_covariance(whiten(noise, est, 0), 0), np.eye(4), atol=1e-10)


def test_walsh_shared_over_sign_flipped_repetitions():
    """One set of Walsh weights for all shots: (I+ - I-)/2 keeps H, B cancels, phase kept."""
    rho, sens = _coils()
    rng = np.random.default_rng(5)
    h = rho * 1.0
    b = np.roll(rho, 5, axis=0) * 3.0 * np.exp(1j * 0.5)  # background, sign-invariant
    signs = np.array([1, -1, 1, -1])
    shots = np.stack([sens * (s * h + b) for s in signs])  # (rep, coil, x, y)
    shots = shots + 0.01 * (rng.standard_normal(shots.shape) + 1j * rng.standard_normal(shots.shape))
    comb = walsh_combine(shots, coil_axis=1, window=7, average_axis=0)
    assert comb.shape == (4, N, N)
    maps = walsh_sensitivities(shots, coil_axis=1, window=7, average_axis=0)
    assert maps.shape == (C, N, N)
    np.testing.assert_allclose(comb, np.einsum("c...,rc...->r...", maps.conj(), shots))
    lockin = (signs[:, None, None] * comb).mean(axis=0)
    expect = np.sum(maps.conj() * sens, axis=0) * h
    obj = np.abs(rho) > 0
    assert np.linalg.norm(lockin[obj] - expect[obj]) < 0.02 * np.linalg.norm(expect[obj])
    # coil axis last, averaging axis first: same maps
    moved = walsh_sensitivities(np.moveaxis(shots, 1, -1), coil_axis=-1, window=7, average_axis=0)
    np.testing.assert_allclose(np.moveaxis(moved, -1, 0), maps, atol=1e-12)
