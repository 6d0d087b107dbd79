"""Cartesian reconstruction: FFT centring against numpy, zero-fill geometry, window trade-offs."""

import numpy as np
import pytest

from dualmode.conventions import apply_affine, fft_centered, ifft_centered, mri_affine
from dualmode.recon.cartesian import reconstruct_image, zero_fill, zero_fill_affine
from dualmode.recon.windows import apodize, psf_fwhm, window_1d, window_tradeoff


@pytest.mark.parametrize("shape", [(6, 5, 1), (8, 7, 4), (9, 1, 1)])
def test_fft_centered_matches_numpy_and_explicit_dft(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ref = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x)))
    np.testing.assert_allclose(fft_centered(x), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft_centered(ref), x, rtol=0, atol=1e-13)
    # explicit sum: y[k] = sum_x f[x] exp(-2 pi i k.x / N), k, x in -N/2..N/2-1, index N//2 is 0
    grids = [np.arange(n) - n // 2 for n in shape]
    y = x.astype(complex)
    for ax, c in enumerate(grids):
        dft = np.exp(-2j * np.pi * np.outer(c, c) / len(c))
        y = np.moveaxis(np.tensordot(dft, np.moveaxis(y, ax, 0), axes=(1, 0)), 0, ax)
    np.testing.assert_allclose(fft_centered(x), y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n, m", [(16, 32), (15, 30), (12, 36)])
def test_zero_fill_keeps_samples_and_world_positions(n, m):
    rng = np.random.default_rng(1)
    img = rng.standard_normal((n, n, 1)) + 1j * rng.standard_normal((n, n, 1))
    k = fft_centered(img)
    big = reconstruct_image(k, zero_fill_to=(m, m, 1))
    factor = m // n
    idx = factor * (np.arange(n) - n // 2) + m // 2  # old voxel i lands on new voxel idx[i]
    np.testing.assert_allclose(big[np.ix_(idx, idx, [0])], img, atol=1e-12)
    # same world positions through the affines (oblique orientation, offset centre)
    rot = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    fov, pos = (40.0, 40.0, 2.0), (3.0, -7.5, 12.0)
    old = mri_affine((n, n, 1), fov, pos, rot)
    new = zero_fill_affine((m, m, 1), fov, pos, rot)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    vox_old = np.stack([ii.ravel(), jj.ravel(), np.zeros(ii.size)], axis=1)
    vox_new = np.stack([idx[ii.ravel()], idx[jj.ravel()], np.zeros(ii.size)], axis=1)
    np.testing.assert_allclose(apply_affine(old, vox_old), apply_affine(new, vox_new), atol=1e-9)
    np.testing.assert_allclose(apply_affine(new, [[m // 2, m // 2, 0]])[0], pos, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(new[:3, :3], axis=0), np.array(fov) / (m, m, 1))


def test_zero_fill_rejects_shrinking():
    with pytest.raises(ValueError):
        zero_fill(np.zeros((8, 8, 1), complex), (4, 8, 1))


STATED = {  # module docstring of dualmode.recon.windows: (fwhm_factor, noise_factor)
    ("hann", ()): (1.657, 0.612),
    ("tukey", (("alpha", 0.5),)): (1.303, 0.829),
    ("tukey", (("alpha", 0.25),)): (1.138, 0.919),
    ("gaussian", (("sigma", 0.5),)): (1.360, 0.664),
}


@pytest.mark.parametrize("kind, params", list(STATED))
def test_window_tradeoffs_match_docstring(kind, params):
    fwhm, noise = STATED[(kind, params)]
    n = 128
    got = window_tradeoff(n, kind, **dict(params))
    assert got["fwhm_factor"] == pytest.approx(fwhm, rel=0.003)
    assert got["noise_factor"] == pytest.approx(noise, rel=0.003)
    # noise factor by simulation: white k-space noise through the window
    rng = np.random.default_rng(2)
    noise_k = rng.standard_normal((n, 64, 64)) + 1j * rng.standard_normal((n, 64, 64))
    plain = ifft_centered(noise_k, axes=(0,)).std()
    windowed = ifft_centered(apodize(noise_k, kind, axes=(0,), **dict(params)), axes=(0,)).std()
    assert windowed / plain == pytest.approx(noise, rel=0.02)
    # resolution by simulation: FWHM of a point source imaged on a zero-filled grid
    k = np.ones((n, 1, 1), complex)
    psf = reconstruct_image(k, window=kind, zero_fill_to=(32 * n, 1, 1), **dict(params))[:, 0, 0]
    rect = reconstruct_image(k, zero_fill_to=(32 * n, 1, 1))[:, 0, 0]
    assert psf_fwhm(psf) / psf_fwhm(rect) == pytest.approx(fwhm, rel=0.01)


@pytest.mark.parametrize("n", [8, 9])
@pytest.mark.parametrize("kind", ["hann", "tukey", "gaussian", "rect"])
def test_window_peak_at_dft_origin(n, kind):
    w = window_1d(n, kind)
    assert w[n // 2] == 1.0 and w.max() == pytest.approx(1.0)
    c = np.arange(n) - n // 2
    inner = np.abs(c) < n / 2  # symmetric about k = 0 (the even-N Nyquist sample has no partner)
    np.testing.assert_allclose(w[inner], w[inner][::-1], atol=1e-12)


def test_unknown_window_raises():
    with pytest.raises(ValueError):
        window_1d(8, "kaiser")


@pytest.mark.parametrize("combine", ["svd", "walsh"])
def test_reconstruct_repetitions_keeps_sign_flip(combine):
    from dualmode.kspace import KSpace, KSpaceHeader
    from dualmode.recon.cartesian import reconstruct_repetitions

    n, coils = 24, 4
    x, y = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
    obj = ((x / 8) ** 2 + (y / 6) ** 2 < 1).astype(complex)
    sens = np.stack([np.exp(-((x - 20 * np.cos(a)) ** 2 + (y - 20 * np.sin(a)) ** 2) / 800) * np.exp(1j * a)
                     for a in np.linspace(0, 2 * np.pi, coils, endpoint=False)])
    images = np.stack([sens * obj * s for s in (1, -1, 1)])[..., None]  # (rep, coil, i, j, 1)
    header = KSpaceHeader(matrix=(n, n, 1), fov_mm=(24.0, 24.0, 2.0), n_repetitions=3, n_coils=coils)
    ksp = KSpace(fft_centered(images).astype(np.complex64), header, source="test")
    out = reconstruct_repetitions(ksp, coil_combine=combine)
    assert out.shape == (3, n, n, 1)
    np.testing.assert_allclose(out[1], -out[0], atol=1e-4 * np.abs(out).max())
    np.testing.assert_allclose(out[2], out[0], atol=1e-4 * np.abs(out).max())
    with pytest.raises(ValueError):
        reconstruct_repetitions(ksp, coil_combine="magic")
