"""ISMRMRD, OME-TIFF and manifest round trips with known geometry."""

import json
import os

import ismrmrd
import numpy as np
import pytest
import tifffile

from dualmode.io import (InputError, KSpace, KSpaceHeader, load_acquisition, read_ismrmrd, read_kspace,
                         read_optical, write_ismrmrd, write_npz, write_ome_tiff)


def _kspace(rng, matrix=(8, 6, 4), reps=2, coils=2):
    rot = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]])
    h = KSpaceHeader(matrix=matrix, fov_mm=(8.0, 6.0, 4.0), position_mm=(1.0, 2.0, -3.0), orientation=rot,
                     tr_ms=12.0, flip_angle_deg=7.5, frequency_hz=75.47e6, n_repetitions=reps, n_coils=coils,
                     line_order=np.arange(matrix[1] * matrix[2])[::-1].reshape(matrix[1:]))
    shape = (reps, coils, *matrix)
    data = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    return KSpace(data, h)


def test_ismrmrd_round_trip_keeps_data_geometry_and_order(tmp_path):
    ksp = _kspace(np.random.default_rng(1))
    path = tmp_path / "k.h5"
    write_ismrmrd(path, ksp)
    back = read_ismrmrd(path)
    np.testing.assert_array_equal(back.data, ksp.data)
    np.testing.assert_allclose(back.header.affine(), ksp.header.affine())
    np.testing.assert_array_equal(back.header.line_order, ksp.header.line_order)
    assert back.header.flip_angle_deg == 7.5 and back.header.tr_ms == 12.0
    assert back.header.nucleus == "13C" and abs(back.header.frequency_hz - 75.47e6) < 1


def test_ismrmrd_file_reads_with_the_official_library_in_lps(tmp_path):
    ksp = _kspace(np.random.default_rng(2))
    path = str(tmp_path / "k.h5")
    write_ismrmrd(path, ksp)
    ds = ismrmrd.Dataset(path, "dataset", False)
    acq = ds.read_acquisition(3)
    j, k = acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2
    np.testing.assert_array_equal(acq.data, ksp.data[acq.idx.repetition, :, :, j, k])
    np.testing.assert_allclose(acq.position, [-1.0, -2.0, -3.0])  # RAS (1, 2, -3) in LPS
    np.testing.assert_allclose(acq.read_dir, [0, -1, 0])  # i -> A (RAS +y) is LPS -y
    ds.close()


def test_npz_round_trip(tmp_path):
    ksp = _kspace(np.random.default_rng(3))
    write_npz(tmp_path / "k.npz", ksp)
    back = read_kspace(tmp_path / "k.npz")
    np.testing.assert_array_equal(back.data, ksp.data)
    np.testing.assert_allclose(back.header.affine(), ksp.header.affine())


def test_ome_tiff_round_trip_keeps_axis_order_and_um(tmp_path):
    data = np.random.default_rng(4).random((7, 5, 3)).astype(np.float32)
    write_ome_tiff(tmp_path / "o.ome.tif", data, (2.0, 3.0, 40.0))
    with tifffile.TiffFile(tmp_path / "o.ome.tif") as tf:
        assert tf.series[0].axes.endswith("ZYX") and tf.series[0].shape[-3:] == (3, 5, 7)
    img = read_optical(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(img.data, data)
    assert img.spacing_um == (2.0, 3.0, 40.0)


def test_plain_tiff_without_size_needs_explicit_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", np.ones((4, 6), np.uint16))
    with pytest.raises(InputError, match="p.tif.*pixel size"):
        read_optical(tmp_path / "p.tif")
    img = read_optical(tmp_path / "p.tif", pixel_size_um=(0.5, 0.5))
    assert img.data.shape == (6, 4, 1) and img.spacing_um[:2] == (0.5, 0.5)


def test_manifest_errors_name_file_and_field(sim2d):
    folder = sim2d
    man_path = os.path.join(folder, "acquisition.json")
    with open(man_path) as f:
        good = json.load(f)
    try:
        bad = dict(good, mri=dict(good["mri"], polarization=[1, -1, 1]))
        with open(man_path, "w") as f:
            json.dump(bad, f)
        with pytest.raises(InputError) as err:
            load_acquisition(folder)
        assert "acquisition.json" in str(err.value) and "mri.polarization" in str(err.value)
        bad = dict(good, mri={k: v for k, v in good["mri"].items() if k != "polarization"})
        with open(man_path, "w") as f:
            json.dump(bad, f)
        with pytest.raises(InputError, match=r"\[mri.polarization\]"):
            load_acquisition(folder)
    finally:
        with open(man_path, "w") as f:
            json.dump(good, f)
    assert load_acquisition(folder).polarization.size == 4


def test_ismrmrd_undersampled_cartesian_keeps_the_mask(tmp_path):
    ksp = _kspace(np.random.default_rng(5), reps=2, coils=1)
    mask = np.zeros(ksp.header.matrix[1:], bool)
    mask[::2] = True
    mask[3] = True
    ksp.data[:, :, :, ~mask] = 0
    ksp.mask = mask
    write_ismrmrd(tmp_path / "u.h5", ksp)
    back = read_ismrmrd(tmp_path / "u.h5")
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_array_equal(back.data, ksp.data)
    assert back.undersampling == pytest.approx(mask.size / mask.sum())


def test_ismrmrd_non_cartesian_round_trip_keeps_trajectory(tmp_path):
    rng = np.random.default_rng(6)
    n_read, n_spokes = 16, 5
    angles = np.arange(n_spokes) * np.pi / n_spokes
    r = np.linspace(-8, 8, n_read, endpoint=False)
    coords = np.stack([np.outer(np.cos(angles), r), np.outer(np.sin(angles), r), np.zeros((n_spokes, n_read))],
                      axis=-1).reshape(-1, 3)
    h = KSpaceHeader(matrix=(16, 16, 1), fov_mm=(16.0, 16.0, 2.0), trajectory="radial", n_repetitions=2,
                     n_coils=2, extra={"readout_length": n_read})
    data = (rng.normal(size=(2, 2, n_read * n_spokes)) + 1j * rng.normal(size=(2, 2, n_read * n_spokes)))
    ksp = KSpace(data.astype(np.complex64), h, coords=coords)
    write_ismrmrd(tmp_path / "r.h5", ksp)
    back = read_ismrmrd(tmp_path / "r.h5")
    assert back.header.trajectory == "radial"
    np.testing.assert_array_equal(back.data, ksp.data)
    np.testing.assert_allclose(back.coords, coords, atol=1e-6)


@pytest.mark.parametrize("block", [4096, 5])
def test_ismrmrd_line_stored_twice_reads_the_later_one(tmp_path, monkeypatch, block):
    """A readout appended again with new data (official library) replaces the first, in any read block size."""
    import dualmode.io.ismrmrd_io as ismrmrd_io

    monkeypatch.setattr(ismrmrd_io, "SCATTER_LINES", block)
    ksp = _kspace(np.random.default_rng(5))
    path = str(tmp_path / "k.h5")
    write_ismrmrd(path, ksp)
    ds = ismrmrd.Dataset(path, "dataset", False)
    acq = ds.read_acquisition(7)
    rep, j, k = acq.idx.repetition, acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2
    new = (np.arange(acq.data.size).reshape(acq.data.shape) * (1 - 2j)).astype(np.complex64)
    acq.data[:] = new
    ds.append_acquisition(acq)
    ds.close()
    back = read_ismrmrd(path)
    expected = ksp.data.copy()
    expected[rep, :, :, j, k] = new
    np.testing.assert_array_equal(back.data, expected)


def test_compressed_stack_reads_the_same_on_any_thread_count(tmp_path):
    """Deflate-compressed OME-TIFF pages decoded on 1 or 3 threads: the written pixels, [x, y, z]."""
    zyx = np.random.default_rng(6).random((5, 40, 30)).astype(np.float32)
    path = tmp_path / "c.ome.tif"
    tifffile.imwrite(path, zyx, ome=True, compression="zlib", rowsperstrip=8,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 2.0, "PhysicalSizeY": 2.0, "PhysicalSizeZ": 10.0})
    one, three = read_optical(path, threads=1), read_optical(path, threads=3)
    np.testing.assert_array_equal(one.data, np.transpose(zyx))
    np.testing.assert_array_equal(three.data, one.data)
    assert three.spacing_um == (2.0, 2.0, 10.0)
