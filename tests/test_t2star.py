"""T2* deconvolution along the readout, on analytic k-space (explicit DFT sums written here, no project FFT)."""

import numpy as np
import pytest

from dualmode.recon.t2star import deconvolve_readout, psf_fwhm_voxels

N, DWELL_MS = 64, 0.04  # readout 2.56 ms


def kspace_line(x0, sigma, t2star_ms=None):
    """Analytic readout of a Gaussian particle (std ``sigma`` voxels at ``x0``), k = -N/2 .. N/2-1."""
    k = np.arange(N) - N // 2
    f = np.exp(-2 * np.pi**2 * sigma**2 * (k / N) ** 2 - 2j * np.pi * k * x0 / N)
    if t2star_ms is not None:
        f = f * np.exp(-(k * DWELL_MS) / t2star_ms)  # sample time - time of k = 0
    return f


def image_at(line, x):
    """Inverse DFT ``(1/N) sum_k F_k exp(2 pi i k x / N)`` at voxel positions ``x`` (centred grid)."""
    k = np.arange(N) - N // 2
    return np.exp(2j * np.pi * np.outer(x, k) / N) @ line / N


def fwhm(line):
    x = np.linspace(-N / 4, N / 4, 8001)
    mag = np.abs(image_at(line, x))
    above = x[mag >= mag.max() / 2]
    return above[-1] - above[0]


def to_kspace(img):
    """Explicit forward DFT of a centred image line (x = -N/2 .. N/2-1)."""
    x = np.arange(N) - N // 2
    return np.exp(-2j * np.pi * np.outer(x, x) / N) @ img


@pytest.mark.parametrize("t2star_ms", [2.56, 0.64])  # readout / T2* = 1 and 4
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_deconvolution_restores_the_t2star_free_width_and_keeps_the_integral(t2star_ms, lam):
    x_grid = np.arange(N) - N // 2
    free, decayed = kspace_line(3.3, 0.5), kspace_line(3.3, 0.5, t2star_ms)
    img = image_at(decayed, x_grid)
    out, info = deconvolve_readout(img[:, None, None], DWELL_MS, t2star_ms, axis=0, lam=lam)
    out_line = to_kspace(out[:, 0, 0])
    w_free, w_dec, w_out = fwhm(free), fwhm(decayed), fwhm(out_line)
    assert w_dec > w_free * (1.01 if t2star_ms > 1 else 1.2)
    # the inverse filter restores the T2*-free width; the regularized one most of the way
    assert abs(w_out - w_free) < (0.01 if lam == 0 else 0.4 * (w_dec - w_free) + 0.01)
    # integrated amplitude: the k = 0 value, exactly 1 before and after
    assert img.sum() == pytest.approx(1.0, abs=1e-9)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    # the PSF FWHM the report states is that of a point seen through the decay
    assert info["psf_fwhm_voxels"] == pytest.approx(fwhm(kspace_line(0.0, 0.0, t2star_ms)), abs=0.01)


def test_psf_width_against_the_lorentzian_limit():
    """Readout >> T2*: |PSF| is a Lorentzian of FWHM sqrt(3) T_read / (pi T2*) voxels."""
    t2 = N * DWELL_MS / 12
    assert psf_fwhm_voxels(N, DWELL_MS, t2) == pytest.approx(np.sqrt(3) * 12 / np.pi, rel=0.03)
    assert psf_fwhm_voxels(N, DWELL_MS, None) == pytest.approx(fwhm(kspace_line(0.0, 0.0)), abs=0.01)


def test_noise_gain_is_as_stated_and_the_amplitude_unbiased():
    rng = np.random.default_rng(3)
    t2 = 0.64
    x_grid = np.arange(N) - N // 2
    clean = image_at(kspace_line(-5.0, 0.5, t2), x_grid)
    noise = (rng.normal(size=(N, 2000)) + 1j * rng.normal(size=(N, 2000))) * 0.05
    noisy = clean[:, None] + noise
    out, info = deconvolve_readout(noisy, DWELL_MS, t2, axis=0)
    out_clean, _ = deconvolve_readout(clean, DWELL_MS, t2, axis=0)
    resid = out - out_clean[:, None]
    assert np.std(resid.real) / 0.05 == pytest.approx(info["noise_gain"], rel=0.03)
    assert 1.0 < info["noise_gain"] < info["max_gain"]
    window = slice(N // 2 - 5 - 4, N // 2 - 5 + 5)
    amp = out[window].sum(axis=0)
    assert abs(np.mean(amp) - out_clean[window].sum()) < 3 * np.std(amp) / np.sqrt(amp.size)
    assert out_clean[window].sum().real == pytest.approx(1.0, abs=0.03)  # most of the particle in the window


def test_bad_arguments():
    with pytest.raises(ValueError, match="t2star_ms"):
        deconvolve_readout(np.zeros((8, 1, 1), complex), 0.04, 0.0)
    with pytest.raises(ValueError, match="lam"):
        deconvolve_readout(np.zeros((8, 1, 1), complex), 0.04, 1.0, lam=-1.0)


def test_pipeline_deconvolves_when_the_manifest_gives_t2star(tmp_path):
    """Analytic k-space with T2* = 0.8 ms over a 2.56 ms readout: deconvolved H gives unbiased amplitudes."""
    from dualmode.pipeline import PipelineOptions, analyse_folder
    from dualmode.simulate import SimulationConfig, simulate_folder

    truth = simulate_folder(tmp_path / "acq", SimulationConfig(seed=8, snr=40, t2star_ms=0.8))
    res = analyse_folder(tmp_path / "acq", PipelineOptions(t2star_deconvolution=True))
    rep = res.report["t2star"]
    assert rep["deconvolved"] and rep["t2star_ms"] == 0.8
    assert rep["psf_fwhm_voxels"] > 1.7 and rep["psf_fwhm_voxels_after"] < 1.3 and 1.2 < rep["noise_gain"] < 1.5
    pos = np.array([p["mri_xyz_mm"] for p in truth["particles"] if p["in_mri"]])[:, :2]
    amp = np.array([p["amplitude"] for p in truth["particles"] if p["in_mri"]])
    ratios, false = [], 0
    for q in res.report["quantification"]["particles"]:
        d = np.linalg.norm(pos - np.array(q["xyz_mm"])[:2], axis=1)
        if d.min() < 0.3:
            ratios.append(q["amplitude"] / amp[d.argmin()])
        else:
            false += 1
    assert false == 0 and len(ratios) >= 0.9 * len(amp)
    assert np.median(ratios) == pytest.approx(1.0, abs=0.05)
    plain = analyse_folder(tmp_path / "acq")  # not asked: the PSF is reported, H untouched
    assert plain.report["t2star"]["deconvolved"] is False
    assert plain.report["t2star"]["psf_fwhm_voxels"] == pytest.approx(rep["psf_fwhm_voxels"])
    assert any("--t2star-deconvolution" in f for f in plain.report["flags"])  # amplitudes not vouched for
    assert not any("T2*" in f for f in res.report.get("flags", []))


def test_run_flag_sets_the_option():
    from dualmode.cli import _options, build_parser

    args = build_parser().parse_args(["run", "some-folder", "--t2star-deconvolution"])
    assert _options(args).t2star_deconvolution is True
    assert _options(build_parser().parse_args(["run", "some-folder"])).t2star_deconvolution is False
