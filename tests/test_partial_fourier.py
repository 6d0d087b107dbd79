"""Partial Fourier: homodyne and POCS on a phantom with smooth phase beat zero-filling."""

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from dualmode.conventions import fft_centered
from dualmode.recon.partial_fourier import homodyne, pocs, zero_filled

N = 64


@pytest.fixture(scope="module")
def phantom():
    mag = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    x, y = np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij")
    phase = 0.8 + 1.2 * x / N + 3.6 * (y / N) ** 2 - 2.0 * x * y / N**2  # smooth, several radians
    return mag, (mag * np.exp(1j * phase))[:, :, None], phase


def _nrmse(image, mag):
    return np.linalg.norm(np.abs(image[:, :, 0]) - mag) / np.linalg.norm(mag)


@pytest.mark.parametrize("side", ["low", "high"])
@pytest.mark.parametrize("n_acquired", [40, 36])  # 5/8 and 9/16 of 64
def test_homodyne_and_pocs_beat_zero_filling(phantom, side, n_acquired):
    mag, img, phase = phantom
    k = fft_centered(img)
    axis_mask = np.arange(N) < n_acquired if side == "low" else np.arange(N) >= N - n_acquired
    k_partial = np.where(axis_mask[None, :, None], k, 0)
    e_zf = _nrmse(zero_filled(k_partial, n_acquired, axis=1, side=side), mag)
    e_hd = _nrmse(homodyne(k_partial, n_acquired, axis=1, side=side), mag)
    rec = pocs(k_partial, n_acquired, axis=1, side=side)
    e_pocs = _nrmse(rec, mag)
    assert e_zf > 0.2
    assert e_hd < 0.3 * e_zf
    assert e_pocs < 0.3 * e_zf
    # the complex output keeps the object phase where there is signal
    obj = mag > 0.2
    dphi = np.angle(rec[:, :, 0][obj] * np.exp(-1j * phase[obj]))
    assert np.median(np.abs(dphi)) < 0.05


def test_unacquired_samples_are_ignored(phantom):
    _, img, _ = phantom
    k = fft_centered(img)
    junk = k.copy()
    junk[:, 40:] = 1e6
    np.testing.assert_allclose(homodyne(junk, 40, axis=1), homodyne(np.where(np.arange(N)[None, :, None] < 40, k, 0), 40, axis=1))


def test_needs_more_than_half():
    with pytest.raises(ValueError):
        homodyne(np.zeros((8, 8, 1), complex), 4, axis=1)
    with pytest.raises(ValueError):
        pocs(np.zeros((8, 8, 1), complex), 6, axis=1, side="middle")
