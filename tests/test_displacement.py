"""Shot displacement estimation (recon/displacement.py) against analytic truth and skimage.

Images are written analytically (Gaussian blobs at shifted centres, sums of k-space
exponentials), never with the Fourier shift or FFT code under test; skimage's
``phase_cross_correlation`` is the independent peer of the peak finder.
"""

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from dualmode.recon.displacement import estimate_shot_shifts, oversampled_magnitude


def _blobs(shape, centres, amplitudes, width=1.3, background=None):
    """Complex image: Gaussian blobs of ``width`` voxels at ``centres`` (voxel units), evaluated directly."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    out = np.zeros(shape, complex) if background is None else background.astype(complex)
    for c, a in zip(centres, amplitudes):
        out += a * np.exp(-np.sum((grid - c) ** 2, axis=-1) / (2 * width**2))
    return out


def _moved_shots(shape, shifts, seed, noise=0.01):
    """Shots of one random blob scene displaced by ``shifts`` (n_shots, ndim), with complex noise."""
    rng = np.random.default_rng(seed)
    ndim = sum(n > 1 for n in shape)
    centres = rng.uniform(4, np.array(shape[:ndim]) - 4, size=(12, ndim))
    centres = np.pad(centres, ((0, 0), (0, len(shape) - ndim)))
    amps = rng.uniform(0.5, 1.5, 12) * np.exp(1j * rng.uniform(0, 2 * np.pi, 12))
    shots = np.stack([_blobs(shape, centres + d, amps) for d in shifts])
    shots += noise * (rng.normal(size=shots.shape) + 1j * rng.normal(size=shots.shape))
    return shots.astype(np.complex64)


@pytest.mark.parametrize("shape", [(32, 28, 16), (40, 36, 1)])
def test_sub_voxel_shifts_recovered_within_0_02_voxel(shape):
    rng = np.random.default_rng(len(shape) + shape[2])
    ndim = sum(n > 1 for n in shape)
    displacement = np.zeros((4, 3))
    displacement[1:, :ndim] = rng.uniform(-1.6, 1.6, size=(3, ndim))
    est = estimate_shot_shifts(_moved_shots(shape, displacement, seed=5))
    np.testing.assert_allclose(est, -displacement, atol=0.02)
    assert np.all(est[:, ndim:] == 0)  # no shift along a single-voxel axis


def test_peak_agrees_with_skimage_phase_cross_correlation():
    """Same estimator as skimage's (cross-correlation, matrix-multiply DFT refinement) on the
    same oversampled magnitudes: the same shift within one 1/50 step of the fine grid."""
    rng = np.random.default_rng(11)
    displacement = np.vstack([np.zeros(3), rng.uniform(-1.2, 1.2, size=(2, 3))])
    shots = _moved_shots((24, 20, 12), displacement, seed=12, noise=0.03)
    ref = oversampled_magnitude(shots[0])
    # the phase correlation's Nyquist terms are interpolated as a real function here (skimage: complex)
    for norm, atol in ((None, 0.5 / 50 + 1e-6), ("phase", 0.03)):
        ours = estimate_shot_shifts(shots, normalization=norm)
        for k in (1, 2):
            peer = phase_cross_correlation(ref, oversampled_magnitude(shots[k]), upsample_factor=50,
                                           normalization=norm)[0] / 2
            np.testing.assert_allclose(ours[k], peer, atol=atol)


def test_oversampled_magnitude_is_the_band_limited_interpolation():
    """A sum of k-space exponentials evaluated on the 2x grid directly equals the FFT interpolation."""
    shape, rng = (10, 8, 6), np.random.default_rng(3)
    ks = [rng.integers(-n // 2, (n + 1) // 2, size=7) for n in shape]
    coef = rng.normal(size=7) + 1j * rng.normal(size=7)

    def field(points):  # points: per-axis coordinates in voxels
        grid = np.meshgrid(*points, indexing="ij")
        phase = sum(k[:, None, None, None] * g[None] / n for k, g, n in zip(ks, grid, shape))
        return np.tensordot(coef, np.exp(2j * np.pi * phase), axes=1)

    coarse = field([np.arange(n) for n in shape])
    fine = field([np.arange(2 * n) / 2 for n in shape])
    np.testing.assert_allclose(oversampled_magnitude(coarse), np.abs(fine), atol=1e-9)
    np.testing.assert_allclose(oversampled_magnitude(coarse, 1), np.abs(coarse))


def test_bad_arguments():
    shots = np.ones((2, 8, 8, 1), np.complex64)
    with pytest.raises(ValueError, match="upsample_factor"):
        estimate_shot_shifts(shots, upsample_factor=0)
    with pytest.raises(ValueError, match="normalization"):
        estimate_shot_shifts(shots + np.arange(8)[:, None, None], normalization="fancy")
    with pytest.raises(ValueError, match="reference"):
        estimate_shot_shifts(shots, reference=2)


@pytest.mark.parametrize("motion", [0.0, 0.8])
def test_motion_step_returns_the_lock_in_of_the_shots_it_keeps(motion):
    """The pipeline reuses the lock-in fitted while deciding; it must be that of the kept shots."""
    from dualmode.recon.lockin_recon import motion_step
    from dualmode.recon.signflip import signflip_combine

    s = np.array([1, -1, -1, 1, 1, -1])
    displacement = np.zeros((s.size, 3))
    displacement[3:, 0] = motion
    rng = np.random.default_rng(21)
    centres = np.pad(rng.uniform(5, 27, size=(6, 2)), ((0, 0), (0, 1)))
    background = np.stack([_blobs((32, 32, 1), centres[:3] + d + 0.5, [6, 8, 7], width=4.0) for d in displacement])
    shots = np.stack([_blobs((32, 32, 1), centres[3:] + d, sign * np.ones(3)) for d, sign in zip(displacement, s)])
    shots = shots + background + 0.01 * (rng.normal(size=shots.shape) + 1j * rng.normal(size=shots.shape))
    motion_fit, accepted, lock_in = motion_step(shots.astype(np.complex64), s, threshold_voxels=0.0)
    assert accepted == (motion > 0)
    kept = motion_fit.images if accepted else shots.astype(np.complex64)
    fresh = signflip_combine(kept, s)
    np.testing.assert_array_equal(lock_in.signal, fresh.signal)
    assert lock_in.drift_order == fresh.drift_order
