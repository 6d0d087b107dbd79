"""Hyperpolarized RF-depletion weighting: orders, variable flip angles, Wiener correction, PSF."""

import numpy as np
import pytest

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.recon.hyperpolarized import (
    constant_signal_flip_angles, correct_rf_depletion, excitation_weights, kspace_weighting,
    line_order_centre_out, line_order_linear, psf_metrics, psf_of_weighting,
)


def test_constant_signal_schedule_gives_flat_weights_and_uses_all_polarization():
    n = 24
    theta = constant_signal_flip_angles(n)
    assert theta[-1] == pytest.approx(90.0)
    w = excitation_weights(n, theta)
    np.testing.assert_allclose(w, 1 / np.sqrt(n), rtol=1e-12)
    # remaining longitudinal magnetisation after the shot is zero
    assert np.prod(np.cos(np.deg2rad(theta))) == pytest.approx(0.0, abs=1e-12)


def test_excitation_weights_by_recursion():
    rng = np.random.default_rng(0)
    flips = rng.uniform(5, 30, 10)
    mz, expect = 1.0, []
    for a in np.deg2rad(flips):
        expect.append(mz * np.sin(a))
        mz = mz * np.cos(a) * np.exp(-5e-3 / 20.0)
    np.testing.assert_allclose(excitation_weights(10, flips, tr_ms=5.0, t1_s=20.0), expect)


def test_line_orders():
    lin = line_order_linear(8, 3)
    assert sorted(lin.ravel()) == list(range(24))
    assert lin[0, 0] == 0 and lin[1, 0] == 1 and lin[0, 1] == 8
    co = line_order_centre_out(8)
    np.testing.assert_array_equal(co[:, 0], [7, 6, 4, 2, 0, 1, 3, 5])
    co2 = line_order_centre_out(6, 6)
    assert co2[3, 3] == 0 and sorted(co2.ravel()) == list(range(36))
    radius = np.hypot(*np.meshgrid(np.arange(6) - 3, np.arange(6) - 3, indexing="ij"))
    assert np.all(np.diff(radius.ravel()[np.argsort(co2.ravel())]) > -1e-12)  # non-decreasing radius


@pytest.mark.parametrize("order_fn", [line_order_linear, line_order_centre_out])
@pytest.mark.parametrize("flip", [12.0, "vfa-ramp"])
def test_correction_undoes_weighting(order_fn, flip):
    nj, nk = 16, 4
    order = order_fn(nj, nk)
    flips = np.linspace(5, 25, nj * nk) if flip == "vfa-ramp" else flip
    rng = np.random.default_rng(1)
    img = rng.standard_normal((2, 1, 8, nj, nk)) + 0j
    k = fft_centered(img)
    w = kspace_weighting(order, flips, tr_ms=10.0, t1_s=30.0)
    assert w[nj // 2, nk // 2] == pytest.approx(1.0)
    measured = k * w[None, :, :]
    np.testing.assert_allclose(correct_rf_depletion(measured, order, flips, 10.0, 30.0), k, atol=1e-10)


def test_wiener_correction_limits_noise_gain():
    n = 64
    order = line_order_centre_out(n)
    w = kspace_weighting(order, 25.0)[:, 0]
    assert w.min() < 0.01  # strong depletion at the edge of k-space: plain division blows up noise
    nsr = 1e-2
    gain = correct_rf_depletion(np.ones((1, n, 1), complex), order, 25.0, noise_to_signal=nsr)[0, :, 0]
    assert np.abs(gain).max() <= 1 / (2 * np.sqrt(nsr)) + 1e-9
    # on a noisy smooth object the Wiener correction has a lower error than plain division
    rng = np.random.default_rng(2)
    x = np.exp(-((np.arange(n) - n / 2) ** 2) / 40.0)[None, :, None] * np.ones((16, 1, 1))
    k = fft_centered(x, axes=(0, 1)) * w[None, :, None]
    sigma = 0.02 * np.abs(k).max()
    noisy = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    err = {}
    for name, nsr_ in [("divide", 0.0), ("wiener", nsr)]:
        rec = ifft_centered(correct_rf_depletion(noisy, order, 25.0, noise_to_signal=nsr_), axes=(0, 1))
        err[name] = np.linalg.norm(rec - x) / np.linalg.norm(x)
    assert err["wiener"] < 0.5 * err["divide"]


def test_psf_linear_versus_centre_out():
    n = 32
    lin = psf_metrics(psf_of_weighting(kspace_weighting(line_order_linear(n), 20.0)[:, 0]))
    co = psf_metrics(psf_of_weighting(kspace_weighting(line_order_centre_out(n), 20.0)[:, 0]))
    flat = psf_metrics(psf_of_weighting(kspace_weighting(line_order_linear(n), constant_signal_flip_angles(n))[:, 0]))
    rect = 1.2067  # FWHM (voxels) of the plain DFT PSF
    assert flat["fwhm"] == pytest.approx(rect, abs=0.01) and flat["asymmetry"] < 1e-12
    assert lin["asymmetry"] > 0.3  # linear order: strong odd (asymmetric) PSF component
    assert co["asymmetry"] < 0.05  # centre-out: nearly symmetric ...
    assert co["fwhm"] > 1.3 * rect  # ... but broadened (low-pass weighting)
    assert co["fwhm"] > lin["fwhm"]
    # the asymmetry is real: the image of a point source is lopsided for the linear order
    w = kspace_weighting(line_order_linear(n), 20.0)[:, 0]
    c = n // 2
    re = ifft_centered(w.astype(complex), axes=(0,))
    assert np.abs(re[c + 1] - re[c - 1]) > 0.05 * np.abs(re[c])  # complex PSF is not even


def test_depletion_model_only_for_hyperpolarized_data():
    from dualmode.recon.hyperpolarized import depletion_applies

    assert depletion_applies(10.0) and not depletion_applies(10.0, hyperpolarized=False)
    assert not depletion_applies(None) and not depletion_applies(90.0, hyperpolarized=False)
    for flip in (90.0, 120.0, 0.0):
        with pytest.raises(ValueError, match="mri.flip_angle_deg"):
            depletion_applies(flip)


def test_90_degree_hyperpolarized_reconstruction_is_refused_thermal_is_plain_fft():
    """A 90 deg flip spends all polarization on the first line (weights 0 after it): refused
    naming the field; the same data as thermal are the plain inverse FFT."""
    from dualmode.conventions import ifft_centered
    from dualmode.kspace import KSpace, KSpaceHeader
    from dualmode.recon.cartesian import reconstruct_repetitions
    from dualmode.recon.hyperpolarized import line_order_linear
    from dualmode.recon.lockin_recon import lockin_reconstruct

    rng = np.random.default_rng(3)
    data = (rng.standard_normal((2, 1, 8, 8, 1)) + 1j * rng.standard_normal((2, 1, 8, 8, 1))).astype(np.complex64)
    h = KSpaceHeader(matrix=(8, 8, 1), fov_mm=(8.0, 8.0, 1.0), flip_angle_deg=90.0, n_repetitions=2,
                     line_order=line_order_linear(8))
    ksp = KSpace(data, h)
    with pytest.raises(ValueError, match="mri.flip_angle_deg"):
        reconstruct_repetitions(ksp)
    with pytest.raises(ValueError, match="mri.flip_angle_deg"):
        lockin_reconstruct(ksp, [1, -1])
    thermal = reconstruct_repetitions(ksp, hyperpolarized=False)
    want = ifft_centered(data[:, 0])
    np.testing.assert_allclose(np.abs(thermal), np.abs(want), rtol=1e-4, atol=1e-6)
