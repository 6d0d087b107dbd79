"""Linear operators and iterative reconstruction (CG, FISTA L1-wavelet and TV), Cartesian and radial."""

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.recon.iterative import fista, l1_wavelet_recon, least_squares, tv_recon, wavelet_prox
from dualmode.recon.linop import FFTOp, MatrixOp, NUFFTOp, RestrictOp, SenseOp
from dualmode.recon.trajectory import poisson_disc_mask

N = 64


@pytest.fixture(scope="module")
def phantom():
    return resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)[:, :, None].astype(complex)


def _nrmse(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


def _coil_maps(n, c=6):
    x, y = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
    maps = []
    for i in range(c):
        a = 2 * np.pi * i / c
        d2 = (x - 40 * np.cos(a)) ** 2 + (y - 40 * np.sin(a)) ** 2
        maps.append(np.exp(-d2 / (2 * 35.0**2)) * np.exp(1j * (0.04 * (x - y) * np.cos(a) + i)))
    return np.array(maps)[..., None]


def _radial(n, spokes, samples):
    ang = np.pi * np.arange(spokes) / spokes
    r = (np.arange(samples) - samples // 2) / samples * n
    return np.stack([r[None] * np.cos(ang[:, None]), r[None] * np.sin(ang[:, None])], axis=-1)


def _dot_test(op, seed=0, normal_tol=1e-10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(op.ishape) + 1j * rng.standard_normal(op.ishape)
    y = rng.standard_normal(op.oshape) + 1j * rng.standard_normal(op.oshape)
    lhs, rhs = np.vdot(op.forward(x), y), np.vdot(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-6 * abs(lhs)
    # normal may take a cheaper route (Toeplitz embedding: exact up to the NUFFT accuracy)
    assert _nrmse(op.normal(x), op.adjoint(op.forward(x))) < normal_tol


def test_operators_are_adjoint():
    mask = poisson_disc_mask((16, 16), 3, calib=(4, 4))[:, :, None]
    _dot_test(FFTOp((16, 16, 1), mask))
    _dot_test(SenseOp(_coil_maps(16, 3), mask))
    _dot_test(RestrictOp(FFTOp((16, 16, 1), mask), np.eye(16, dtype=bool)[:, :, None]))
    _dot_test(MatrixOp(np.random.default_rng(1).standard_normal((7, 5))))
    _dot_test(NUFFTOp(_radial(16, 12, 24), (16, 16, 1)), normal_tol=3e-3)  # NUFFT eps 1e-3
    _dot_test(NUFFTOp(_radial(16, 12, 24), (16, 16, 1), sens=_coil_maps(16, 2)), normal_tol=3e-3)
    # the Cartesian operator is the DFT of the conventions, sampled by the mask
    x = np.random.default_rng(2).standard_normal((16, 16, 1)) + 0j
    np.testing.assert_allclose(FFTOp((16, 16, 1), mask).forward(x), fft_centered(x) * mask)
    assert FFTOp((16, 16, 1), mask).max_eig() == pytest.approx(256.0, rel=1e-6)


def test_cg_sense_recovers_uniformly_undersampled_image(phantom):
    maps = _coil_maps(N)
    mask = np.zeros((N, N, 1), bool)
    mask[:, ::2] = True  # R = 2 along j: aliasing that a single coil cannot unfold
    op = SenseOp(maps, mask)
    y = op.forward(phantom)
    single = least_squares(FFTOp((N, N, 1), mask), y[0], max_iter=30)
    x = least_squares(op, y, max_iter=60, tol=1e-10)
    support = np.abs(maps).sum(0) > 0.5  # where the coils see the object
    assert _nrmse(x[support], phantom[support]) < 1e-3
    assert _nrmse(single * maps[0] / np.where(support, maps[0], 1), phantom) > 0.3


def test_cg_radial_nufft_recovers_sampled_disk(phantom):
    coords = _radial(N, 100, 2 * N)
    op = NUFFTOp(coords, (N, N, 1))  # normal operator by Toeplitz embedding
    y = op.forward(phantom)
    x = least_squares(op, y, max_iter=40, tol=1e-10)
    kx, ky = np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij")
    disk = (np.hypot(kx, ky) < N / 2 - 1)[:, :, None]  # the k-space region radial spokes cover

    def lowpass(im):
        return ifft_centered(fft_centered(im) * disk)

    assert _nrmse(lowpass(x), lowpass(phantom)) < 0.01
    assert _nrmse(x, phantom) < 0.07  # the rest is the unsampled k-space corners
    gridded = op.adjoint(y)  # no density compensation: blurred
    scale = np.vdot(gridded, phantom) / np.vdot(gridded, gridded)
    assert _nrmse(scale * gridded, phantom) > 3 * _nrmse(x, phantom)


def test_fista_matches_closed_form_for_full_sampling():
    rng = np.random.default_rng(3)
    x_true = rng.standard_normal((16, 16, 1)) + 1j * rng.standard_normal((16, 16, 1))
    op = FFTOp((16, 16, 1))
    y = op.forward(x_true)
    lam = 0.3 * 256
    # A^H A = N I: the minimiser is W^T soft(W x_true, lam / N)
    expect = wavelet_prox(x_true, lam / 256, "db2", 2)
    got = fista(op, y, lambda v, t: wavelet_prox(v, lam * t, "db2", 2), max_iter=30)
    np.testing.assert_allclose(got, expect, atol=1e-8)


def test_l1_wavelet_and_tv_beat_zero_filling_at_r4(phantom):
    mask = poisson_disc_mask((N, N), 4, calib=(12, 12))[:, :, None]  # variable-density Poisson disc
    assert 0.24 < mask.mean() < 0.26
    op = FFTOp((N, N, 1), mask)
    rng = np.random.default_rng(4)
    y = op.forward(phantom) + mask * 0.5 * (rng.standard_normal(mask.shape) + 1j * rng.standard_normal(mask.shape))
    zero_filled = op.adjoint(y) / (N * N)
    e_zf = _nrmse(zero_filled, phantom)
    e_l1 = _nrmse(l1_wavelet_recon(op, y, lam=8.0, max_iter=80), phantom)
    e_tv = _nrmse(tv_recon(op, y, lam=8.0, max_iter=60), phantom)
    assert e_zf > 0.3
    assert e_l1 < 0.5 * e_zf
    assert e_tv < 0.25 * e_zf


def test_l1_wavelet_and_tv_on_undersampled_radial(phantom):
    from dualmode.recon.trajectory import golden_angle_radial

    coords = golden_angle_radial(24, 2 * N, (N, N))  # ~4x below the radial Nyquist of 100 spokes
    op = NUFFTOp(coords, (N, N, 1))
    y = op.forward(phantom)
    e_cg = _nrmse(least_squares(op, y, max_iter=15), phantom)  # early-stopped least squares
    e_l1 = _nrmse(l1_wavelet_recon(op, y, lam=100.0, max_iter=100), phantom)
    e_tv = _nrmse(tv_recon(op, y, lam=60.0, max_iter=100), phantom)
    assert e_cg > 0.2
    assert e_l1 < 0.6 * e_cg
    assert e_tv < 0.45 * e_cg


def test_admm_tv_minimises_its_objective(phantom):
    from dualmode.recon.iterative import admm_tv, tv_objective

    mask = poisson_disc_mask((N, N), 4, calib=(12, 12))[:, :, None]
    op = FFTOp((N, N, 1), mask)
    y = op.forward(phantom)
    lam = 2.0
    x = admm_tv(op, y, lam, max_iter=100)
    e_zf = _nrmse(op.adjoint(y) / (N * N), phantom)
    assert _nrmse(x, phantom) < 0.25 * e_zf
    f = tv_objective(op, y, x, lam)
    assert f <= tv_objective(op, y, admm_tv(op, y, lam, max_iter=30), lam)
    assert f < tv_objective(op, y, phantom, lam)
    assert f <= 1.001 * tv_objective(op, y, tv_recon(op, y, lam, max_iter=100), lam)  # FISTA, Chambolle prox
    rng = np.random.default_rng(6)
    for _ in range(3):  # no small perturbation lowers the objective
        d = rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)
        assert f <= tv_objective(op, y, x + 1e-3 * d, lam) * (1 + 1e-6)


def test_cg_sense_on_undersampled_radial(phantom):
    from dualmode.recon.trajectory import golden_angle_radial

    maps = _coil_maps(N, 6)
    coords = golden_angle_radial(34, 2 * N, (N, N))  # ~3x below the radial Nyquist
    multi = NUFFTOp(coords, (N, N, 1), sens=maps)
    single = NUFFTOp(coords, (N, N, 1))
    support = np.abs(maps).sum(0) > 0.5
    x = least_squares(multi, multi.forward(phantom), max_iter=40)
    x1 = least_squares(single, single.forward(phantom), max_iter=40)
    assert _nrmse(x[support], phantom[support]) < 0.5 * _nrmse(x1[support], phantom[support])
