"""Quantitative 13C on analytic data: c13_phased, detection at a stated false-alarm rate, amplitudes.

The truth comes from :mod:`dualmode.simulate.analytic` (closed-form sphere transforms, numpy's
FFT for the band-limited truth image), never from :mod:`dualmode.recon.quantify`.
"""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from dualmode.recon import quantify
from dualmode.simulate.analytic import make_bodies
from dualmode.simulate.mri import bandlimited_image

SHAPE = (48, 48, 1)
VOX = np.array([0.2, 0.2, 1.0])
AFF = np.diag([*VOX, 1.0])
AFF[:3, 3] = -VOX * (np.array(SHAPE) // 2)


def _scene(rng, n=6, diam_range=(120.0, 300.0), density=10.0):
    """Well-separated spheres in a 2D slice and their noise-free image (integrated signal = density volume / voxel)."""
    pts = []
    while len(pts) < n:
        p = rng.uniform(-3.6, 3.6, 2)
        if all(np.linalg.norm(p - q) > 1.2 for q in pts):
            pts.append(p)
    centres = np.c_[np.array(pts), np.zeros(n)]
    diam = rng.uniform(*diam_range, n)
    bodies = make_bodies(rng, centres, diam, np.full(n, density))
    image = bandlimited_image(bodies, AFF, SHAPE)
    amplitude = bodies.particle_volume(n) / np.prod(VOX)
    centre_vox = (centres - AFF[:3, 3]) / VOX - np.array(SHAPE) // 2
    return image, amplitude, centre_vox, diam


def test_particle_model_is_the_analytic_sphere_image():
    rng = np.random.default_rng(1)
    image, amplitude, centre_vox, diam = _scene(rng, n=1)
    model = quantify.particle_model(SHAPE, VOX, centre_vox[0], diam[0] / 1000)
    np.testing.assert_allclose(amplitude[0] * model, image, atol=1e-6 * image.max())
    assert model.sum() == pytest.approx(1.0)


def test_phased_real_part_is_unbiased_gaussian():
    rng = np.random.default_rng(2)
    image, *_ = _scene(rng)
    sigma = 0.05
    h = (image + sigma * (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE))) * np.exp(1.1j)
    phased, phase = quantify.phased_real(h)
    assert phase == pytest.approx(1.1, abs=0.02)
    resid = phased - image
    assert abs(resid.mean()) < 3 * sigma / np.sqrt(resid.size)
    assert resid.std() == pytest.approx(sigma, rel=0.05)
    empty = image < 1e-3 * image.max()
    assert abs(np.abs(h)[empty].mean() / sigma - np.sqrt(np.pi / 2)) < 0.1  # the Rician floor |H| has


def test_false_detections_on_noise_stay_below_the_stated_rate():
    rng = np.random.default_rng(3)
    rate, n_images = 0.5, 60
    false = sum(len(quantify.detect(rng.normal(size=SHAPE), 1.0, VOX, 0.2, false_alarms_per_image=rate)[0])
                for _ in range(n_images))
    assert false / n_images <= rate


def test_recall_and_amplitudes_with_calibrated_sigma():
    """20 noise realisations of analytic scenes: recall at SNR >= 5, amplitude error, z-score spread."""
    rng = np.random.default_rng(4)
    z, rel, hits, false, strong = [], [], [], 0, []
    for _ in range(20):
        image, amp, centre_vox, _ = _scene(rng, diam_range=(100.0, 300.0))
        sigma = rng.uniform(0.01, 0.06)
        noisy = image + rng.normal(0, sigma, SHAPE)
        pos, _, _ = quantify.detect(noisy, sigma, VOX, 0.2)
        dist = np.linalg.norm(pos[:, None, :] - centre_vox[None], axis=2) if len(pos) else np.zeros((0, 6))
        snr = amp * np.array([np.linalg.norm(quantify.particle_model(SHAPE, VOX, c, 0.2)) for c in centre_vox]) / sigma
        hits += list(zip(snr, dist.min(axis=0) < 1.5 if len(pos) else np.zeros(6, bool)))
        false += int(np.sum(dist.min(axis=1) >= 1.5)) if len(pos) else 0
        fit = quantify.fit_amplitudes(noisy, sigma, centre_vox, VOX, 0.2)
        z += list((fit.amplitude - amp) / fit.sigma)
        rel += list((fit.amplitude - amp) / amp)
        strong += list(fit.snr >= 10)
    hits = np.array(hits)
    recall = hits[hits[:, 0] >= 5, 1].mean()
    assert recall >= 0.9 and false / 20 <= 1
    assert np.median(np.abs(np.array(rel)[np.array(strong)])) <= 0.10
    assert 0.8 <= np.std(z) <= 1.25


@pytest.fixture(scope="module")
def analysed(sim2d):
    from dualmode.pipeline import process_folder

    return process_folder(sim2d)


def test_c13_phased_error_is_the_noise_floor_and_background_is_gone(sim2d, analysed):
    """The issue's folder (seed 7, background 10x, SNR 20), analytic k-space.

    Against the object at the acquisition's resolution (truth/c13_bandlimited) the error of
    ``c13_phased`` in the particle region is only noise: ``sigma_H sqrt(n) / ||truth||``
    (0.17 here; the issue's 0.15 is below this floor for any unbiased image, and the
    voxel-average truth/c13 differs from every band-limited image by 0.31 without noise).
    """
    th = nib.load(os.path.join(sim2d, "truth", "c13_bandlimited.nii.gz")).get_fdata()
    tb = nib.load(os.path.join(sim2d, "truth", "background.nii.gz")).get_fdata()
    ph = analysed.c13_phased.data
    sigma = analysed.lockin.noise_sigma
    region = ndimage.binary_dilation(th > 0.05 * th.max(), iterations=1)
    nrmse = np.linalg.norm((ph - th)[region]) / np.linalg.norm(th[region])
    floor = sigma * np.sqrt(region.sum()) / np.linalg.norm(th[region])
    assert nrmse <= 1.1 * floor
    mag = np.abs(analysed.lockin.signal)
    assert np.linalg.norm((mag - th)[region]) / np.linalg.norm(th[region]) > 2 * nrmse  # the Rician bias
    far = ~ndimage.binary_dilation(th > 0.01 * th.max(), iterations=2)
    assert abs(ph[(tb > 0.5 * tb.max()) & far].mean()) / sigma * np.sqrt(((tb > 0.5 * tb.max()) & far).sum()) < 4
    assert analysed.report["signflip"]["residual_background_sigma"] <= 1.5


def test_more_shots_bring_c13_phased_below_the_issue_limit(tmp_path):
    """The nearest right thing to the issue's NRMSE <= 0.15 (seed 7, background 10x, SNR 20).

    With 4 shots the floor ``sigma_H sqrt(n) / ||truth||`` is 0.173: an unbiased image reaches
    0.15 with probability 0.01 (chi-square, docs/quantitative.md). Three +- cycles (6 shots) lower
    sigma_H by sqrt(6/4); the same folder then meets 0.15 without any denoising.
    """
    from dualmode.pipeline import process_folder
    from dualmode.simulate import SimulationConfig, simulate_folder

    folder = tmp_path / "seed7x3"
    simulate_folder(folder, SimulationConfig(seed=7, background_ratio=10.0, snr=20.0, n_cycles=3))
    result = process_folder(folder)
    th = nib.load(os.path.join(folder, "truth", "c13_bandlimited.nii.gz")).get_fdata()
    region = ndimage.binary_dilation(th > 0.05 * th.max(), iterations=1)
    nrmse = np.linalg.norm((result.c13_phased.data - th)[region]) / np.linalg.norm(th[region])
    floor = result.lockin.noise_sigma * np.sqrt(region.sum()) / np.linalg.norm(th[region])
    assert nrmse <= 0.15
    assert nrmse <= 1.1 * floor
    assert result.report["signflip"]["residual_background_sigma"] <= 1.5


def test_pipeline_amplitudes_match_the_truth(sim2d, analysed):
    with open(os.path.join(sim2d, "truth.json")) as f:
        truth = json.load(f)
    q = analysed.quantification
    true_xyz = np.array([p["mri_xyz_mm"] for p in truth["particles"]])
    true_amp = np.array([p["amplitude"] for p in truth["particles"]])
    dist = np.linalg.norm(q.xyz_mm[:, None, :] - true_xyz[None], axis=2)
    nearest = dist.argmin(axis=1)
    assert np.all(dist.min(axis=1) < 0.3)  # no false detection
    assert len(q.xyz_mm) >= 0.75 * len(true_xyz)
    z = (q.amplitude - true_amp[nearest]) / q.sigma
    assert np.all(np.abs(z) < 4)
    rel = np.abs(q.amplitude / true_amp[nearest] - 1)
    assert np.median(rel[q.snr >= 10]) <= 0.10


def _disc_limited(image, k_max):
    """``image`` seen through the disc ``|k| <= k_max`` (cycles/FOV), by numpy's FFT (not the project's)."""
    spec = np.fft.fftshift(np.fft.fftn(image))
    k = np.meshgrid(*[np.arange(n) - n // 2 for n in image.shape], indexing="ij")
    return np.fft.ifftn(np.fft.ifftshift(spec * (np.hypot(k[0], k[1]) <= k_max))).real


def test_disc_limited_model_is_the_analytic_sphere_seen_through_the_disc():
    rng = np.random.default_rng(5)
    image, amplitude, centre_vox, diam = _scene(rng, n=1)
    model = quantify.particle_model(SHAPE, VOX, centre_vox[0], diam[0] / 1000, k_max=20.5)
    np.testing.assert_allclose(amplitude[0] * model, _disc_limited(image, 20.5), atol=1e-6 * image.max())
    assert model.sum() == pytest.approx(1.0)
    window = quantify._window(centre_vox[0], SHAPE, 3)
    from dualmode.recon.sphere_model import window_model

    np.testing.assert_allclose(window_model(SHAPE, VOX, centre_vox[0], diam[0] / 1000, window, k_max=20.5),
                               model[window], atol=1e-12)
    # a support holding the whole grid is the square: the Cartesian model, bit for bit
    square = quantify.particle_model(SHAPE, VOX, centre_vox[0], diam[0] / 1000)
    assert np.array_equal(quantify.particle_model(SHAPE, VOX, centre_vox[0], diam[0] / 1000, k_max=40.0), square)


def test_sampled_k_max_of_radial_and_grid_trajectories():
    from dualmode.recon.trajectory import golden_angle_radial, radial_3d

    assert quantify.sampled_k_max(golden_angle_radial(30, 128, (64, 64)), (64, 64, 1)) == (32.0, 32.0, 0.5)
    assert quantify.sampled_k_max(radial_3d(50, 64, (32, 32, 16)), (32, 32, 16)) == (16.0, 16.0, 8.0)
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in (16, 16)], indexing="ij"), axis=-1)
    assert quantify.sampled_k_max(grid.reshape(-1, 2), (16, 16, 1)) is None  # SPI: the square


def test_disc_limited_amplitudes_need_the_disc_model():
    """Noise-free disc-limited scenes: the square model inflates the amplitudes, the disc model does not."""
    rng = np.random.default_rng(6)
    ratios = {None: [], 24.0: []}
    for _ in range(4):
        image, amp, centre_vox, _ = _scene(rng, diam_range=(150.0, 250.0))
        disc = _disc_limited(image, 24.0)
        for k_max in ratios:
            fit = quantify.fit_amplitudes(disc, 0.01, centre_vox, VOX, 0.2, k_max=k_max)
            ratios[k_max] += list(fit.amplitude / amp)
    assert np.median(ratios[None]) > 1.05
    assert np.median(ratios[24.0]) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("trajectory", ["centre-out", "radial"])
def test_non_cartesian_pipeline_amplitudes_match_the_truth(tmp_path, trajectory):
    """Analytic centre-out / radial folders (seed 7) through the pipeline's quantification step."""
    from dualmode.io import load_acquisition
    from dualmode.pipeline import PipelineOptions
    from dualmode.quantitative import quantify_step
    from dualmode.recon.lockin_recon import lockin_reconstruct
    from dualmode.simulate import SimulationConfig, simulate_folder

    truth = simulate_folder(tmp_path, SimulationConfig(seed=7, trajectory=trajectory, background_ratio=10.0,
                                                       snr=20.0))
    acq = load_acquisition(str(tmp_path))
    lock, _ = lockin_reconstruct(acq.kspace, acq.polarization)
    _, q, report = quantify_step(acq, lock, acq.kspace.header.affine(), PipelineOptions())
    k_max = np.atleast_1d(report["k_max"])[:2]  # in-plane semi-axes of a 2D folder
    assert np.all((k_max > 0.45 * 64) & (k_max < 0.5 * 64 * np.sqrt(2)))  # the sampled disc, not the square
    parts = [p for p in truth["particles"] if p["in_mri"]]
    true_xyz, true_amp = np.array([p["mri_xyz_mm"] for p in parts]), np.array([p["amplitude"] for p in parts])
    dist = np.linalg.norm(q.xyz_mm[:, None, :] - true_xyz[None], axis=2)
    assert np.all(dist.min(axis=1) < 0.3) and len(q.xyz_mm) >= 0.75 * len(parts)
    ratio = q.amplitude / true_amp[dist.argmin(axis=1)]
    assert np.median(ratio[q.snr >= 10]) == pytest.approx(1.0, abs=0.10)
    assert np.all(np.abs((q.amplitude - true_amp[dist.argmin(axis=1)]) / q.sigma) < 4)


def _sphere_image_direct(shape, vox, centre, diam, k_max=None):
    """The sphere seen through the grid (or the ball |k| <= ``k_max``), by the explicit DFT sum in numpy."""
    k = [np.arange(n) - n // 2 for n in shape]
    kk = np.stack([g.ravel() for g in np.meshgrid(*k, indexing="ij")], 1)
    x = np.stack([g.ravel() for g in np.meshgrid(*k, indexing="ij")], 1) - np.asarray(centre)
    kmm = np.sqrt(np.sum((kk / (np.array(shape) * np.asarray(vox))) ** 2, 1))
    u = np.maximum(np.pi * diam * kmm, 1e-9)
    f = np.where(kmm == 0, 1.0, 3 * (np.sin(u) - u * np.cos(u)) / u**3)
    if k_max is not None:
        f = f * (np.sum((kk / k_max) ** 2, 1) <= 1.0)
    phase = np.exp(2j * np.pi * (x / np.array(shape)) @ kk.T)
    return ((phase @ f).real / np.prod(shape)).reshape(shape)


@pytest.mark.parametrize("shape, k_max", [((10, 9, 6), None), ((9, 10, 5), 3.5), ((12, 12, 1), None)])
def test_window_model_and_its_jacobian_match_the_explicit_sum(shape, k_max):
    """The folded window model, its position and diameter derivatives (central differences of the sum)."""
    from dualmode.recon.sphere_model import window_model

    vox, diam = (0.2, 0.25, 0.4), 0.3
    centre = np.array([0.37, -1.21, 0.6]) * (np.array(shape) > 1)
    window = quantify._window(centre, shape, 2)
    model, d_pos, d_diam = window_model(shape, vox, centre, diam, window, jacobian=True, k_max=k_max)
    np.testing.assert_allclose(model, _sphere_image_direct(shape, vox, centre, diam, k_max)[window], atol=1e-12)
    h = 1e-5
    for axis in [a for a in range(3) if shape[a] > 1]:
        step = h * np.eye(3)[axis]
        fd = (_sphere_image_direct(shape, vox, centre + step, diam, k_max)
              - _sphere_image_direct(shape, vox, centre - step, diam, k_max))[window] / (2 * h)
        np.testing.assert_allclose(d_pos[axis], fd, atol=1e-7 * np.abs(fd).max())
    fd = (_sphere_image_direct(shape, vox, centre, diam + h, k_max)
          - _sphere_image_direct(shape, vox, centre, diam - h, k_max))[window] / (2 * h)
    np.testing.assert_allclose(d_diam, fd, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("shape, k_max", [((16, 16, 8), None), ((15, 16, 1), 5.0), ((9, 7, 5), None), ((12, 10, 6), 4.0)])
def test_model_hermitian_equals_hermitian_bit_for_bit(shape, k_max):
    """The Nyquist-planes-only symmetrisation of a model spectrum gives exactly the full one, and the
    result is the spectrum of the real image (checked against numpy's FFT, not the module's)."""
    from dualmode.recon.sphere_model import hermitian, model_hermitian, spectrum

    rng = np.random.default_rng(11)
    for _ in range(4):
        centre = rng.uniform(-3, 3, 3) * (np.array(shape) > 1)
        spec = spectrum(shape, (0.2, 0.25, 0.4), centre, rng.uniform(0.1, 0.5), k_max)
        sym = model_hermitian(spec.copy())
        assert np.array_equal(sym, hermitian(spec))
        image = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(sym)))
        assert np.abs(image.imag).max() <= 1e-12 * np.abs(image.real).max()
