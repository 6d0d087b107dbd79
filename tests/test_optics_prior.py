"""Optics-prior reconstruction: support-constrained least squares from few k-space samples."""

import numpy as np
import pytest

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.recon.linop import FFTOp
from dualmode.recon.optics_prior import (
    choose_kspace_samples, condition_number, coords_to_mask, fourier_matrix, support_lstsq, support_mask,
)


def _scene(n, n_particles, seed):
    """Particles on voxel centres plus their optical positions (jittered < 1 voxel) and k-space."""
    rng = np.random.default_rng(seed)
    flat = rng.choice((n - 8) ** 2, n_particles, replace=False)
    pos = np.stack(np.unravel_index(flat, (n - 8, n - 8)), axis=1) + 4
    x = np.zeros((n, n, 1), complex)
    x[pos[:, 0], pos[:, 1], 0] = rng.uniform(0.5, 1.5, n_particles) * np.exp(1j * rng.uniform(-0.3, 0.3, n_particles))
    optical = pos + np.clip(rng.normal(0, 0.35, pos.shape), -0.49, 0.49)
    return x, optical, fft_centered(x), rng


def test_fourier_matrix_is_the_dft_restricted_to_support():
    x, optical, k, _ = _scene(16, 4, 0)
    support = support_mask(x.shape, optical, dilation=1.0)
    coords = np.array([[0, 0], [3, -2], [-8, 7], [5, 5]], float)
    a = fourier_matrix(coords, support)
    expect = k[tuple((coords + 8).astype(int).T) + (0,)]
    np.testing.assert_allclose(a @ x[support], expect, atol=1e-10)


def test_support_mask_dilation():
    one = support_mask((9, 9, 1), [[4, 4]], dilation=0)
    assert one.sum() == 1 and one[4, 4, 0]
    assert support_mask((9, 9, 1), [[4, 4]], dilation=1.0).sum() == 5
    assert support_mask((9, 9, 1), [[4, 4]], dilation=1.5).sum() == 9
    assert support_mask((9, 9, 9), [[4, 4, 4]], dilation=1.0).sum() == 7
    with pytest.raises(ValueError):
        support_mask((9, 9, 1), [[12, 4]])


def test_sparse_scene_recovered_at_high_acceleration():
    n, particles = 64, 10
    x, optical, k, rng = _scene(n, particles, 1)
    support = support_mask(x.shape, optical, dilation=1.5)  # 3x3 per particle: the true voxel is inside
    assert np.all(support[np.abs(x) > 0])
    s = int(support.sum())
    m = 2 * s
    accel = n * n / m
    assert accel > 20
    coords = choose_kspace_samples(support, m, method="greedy")
    assert len(np.unique(coords, axis=0)) == m
    sigma = np.sqrt(np.mean(np.abs(k) ** 2)) / 20  # SNR 20 on the k-space data (rms signal / noise)
    mask = coords_to_mask(coords, x.shape)
    noisy = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / np.sqrt(2)
    est = support_lstsq(noisy[mask], np.argwhere(mask)[:, :2] - n // 2, support)
    nrmse = np.linalg.norm(est - x) / np.linalg.norm(x)
    assert nrmse <= 0.1
    # same answer by CG on the masked FFT operator restricted to the support
    est_cg = support_lstsq(noisy * mask, None, support, op=FFTOp(x.shape, mask), max_iter=200, tol=1e-12)
    np.testing.assert_allclose(est_cg, est, atol=1e-6 * np.abs(est).max())
    # the same number of samples without the support prior (zero-filled) is useless
    zf = ifft_centered(noisy * mask) * accel
    assert np.linalg.norm(zf - x) / np.linalg.norm(x) > 1.0


def test_greedy_design_is_better_conditioned_than_random():
    n = 32
    x, optical, _, _ = _scene(n, 6, 2)
    support = support_mask(x.shape, optical, dilation=1.5)
    m = int(1.3 * support.sum())
    greedy = condition_number(choose_kspace_samples(support, m, method="greedy"), support)
    rand = condition_number(choose_kspace_samples(support, m, method="random", max_tries=3, seed=1), support)
    assert greedy < 10 and greedy < rand
    # prefixes of the greedy order are greedy designs too
    first = choose_kspace_samples(support, m // 2 + support.sum() // 2, method="greedy")
    np.testing.assert_array_equal(first, choose_kspace_samples(support, m, method="greedy")[:len(first)])


def test_phase_encode_lines_with_full_readout():
    from dualmode.recon.optics_prior import choose_phase_encodes, line_coords

    n = 64
    x, optical, k, rng = _scene(n, 10, 3)
    support = support_mask(x.shape, optical, dilation=1.5)
    per_plane = int(support.sum(axis=(1, 2)).max())  # unknowns of the worst readout position
    n_lines = per_plane + 2
    pe = choose_phase_encodes(support, n_lines, readout_axis=0)
    assert pe.shape == (n_lines, 1) and len(np.unique(pe)) == n_lines
    coords = line_coords(pe, x.shape, readout_axis=0)
    assert coords.shape == (n_lines * n, 2)
    np.testing.assert_array_equal(coords[:n, 0], np.arange(n) - n // 2)
    np.testing.assert_array_equal(coords[:n, 1], pe[0, 0])
    sigma = np.sqrt(np.mean(np.abs(k) ** 2)) / 20
    noisy = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / np.sqrt(2)
    idx = tuple((coords + n // 2).astype(int).T) + (np.zeros(len(coords), int),)
    est = support_lstsq(noisy[idx], coords, support)
    assert n / n_lines > 5
    assert np.linalg.norm(est - x) / np.linalg.norm(x) <= 0.1
    # 3D: readout along k, phase encodes over (i, j)
    sup3 = support_mask((8, 8, 8), [[2, 3, 4], [5, 5, 1]], dilation=1.0)
    pe3 = choose_phase_encodes(sup3, 6, readout_axis=2)
    assert pe3.shape == (6, 2)
    c3 = line_coords(pe3, (8, 8, 8), readout_axis=2)
    assert c3.shape == (48, 3) and np.all(c3[:8, :2] == pe3[0])
