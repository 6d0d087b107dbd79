"""Siemens twix reader. No real twix file is redistributable offline, so files are written
with twixtools' own ``write_twix`` (VD/VE layout, MDH per readout) from known k-space:
SYNTHETIC files, real writer and reader code paths."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.io import KSpace, KSpaceHeader, read_kspace, remove_readout_oversampling
from dualmode.simulate import write_twix


def test_oversampling_removal_keeps_the_central_half_of_the_image():
    """Ground truth: an image on a 2x readout FOV whose central half is known."""
    rng = np.random.default_rng(0)
    inner = rng.standard_normal((16, 5)) + 1j * rng.standard_normal((16, 5))
    wide = np.zeros((32, 5), complex)
    wide[8:24] = inner  # central half of a 32-pixel FOV (index 16 = x 0 in both grids)
    k_os = fft_centered(wide, axes=(0,))
    k = remove_readout_oversampling(k_os, 2, axis=0)
    assert k.shape == (16, 5)
    np.testing.assert_allclose(ifft_centered(k, axes=(0,)), inner, atol=1e-12)


def test_oversampling_removal_odd_factor():
    wide = np.zeros(30, complex)
    wide[10:20] = np.arange(10)
    k = remove_readout_oversampling(fft_centered(wide, axes=(0,)), 3, axis=0)
    np.testing.assert_allclose(ifft_centered(k, axes=(0,)).real, np.arange(10), atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 16, 12, 1), (1, 2, 8, 6, 4)])
def test_synthetic_twix_round_trip(tmp_path, shape):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    rot = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    hdr = KSpaceHeader(matrix=shape[2:], fov_mm=(40.0, 30.0, 2.0), position_mm=(1.0, -2.0, 3.0), orientation=rot,
                       tr_ms=12.0, te_ms=1.5, flip_angle_deg=8.0, nucleus="13C", frequency_hz=32.1e6,
                       n_repetitions=shape[0], n_coils=shape[1])
    path = tmp_path / "meas_MID00042_FID00001_csi.dat"
    write_twix(path, KSpace(data, hdr), oversampling=2)
    got = read_kspace(path)  # .dat -> twix
    h = got.header
    assert got.data.shape == shape and h.extra["readout_oversampling"] == 2
    np.testing.assert_allclose(got.data, data, atol=1e-5)
    np.testing.assert_allclose(h.orientation, rot, atol=1e-6)
    np.testing.assert_allclose(h.position_mm, (1.0, -2.0, 3.0), atol=1e-5)
    assert (h.fov_mm, h.tr_ms, h.te_ms, h.flip_angle_deg, h.nucleus) == ((40.0, 30.0, 2.0), 12.0, 1.5, 8.0, "13C")
    assert h.frequency_hz == 32.1e6
    assert h.line_order is not None and h.line_order[3, 0] == 3  # lines written in linear order
