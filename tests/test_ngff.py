"""OME-Zarr output read back with the ome-zarr reader: scales, translations, data."""

import numpy as np
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from dualmode.conventions import mri_affine, voxel_sizes
from dualmode.io.ngff import write_ome_zarr
from dualmode.io import OpticalImage
from dualmode.registration import resample_optical
from dualmode.registration.fusion import optical_native_grid
from dualmode.simulate import make_pair


def _read(path):
    node = list(Reader(parse_url(str(path)))())[0]
    return node.data, node.metadata


def _affine(transforms):
    scale = transforms[0]["scale"][::-1]
    trans = transforms[1]["translation"][::-1]
    aff = np.diag([*scale, 1.0])
    aff[:3, 3] = trans
    return aff


def _write(path, mri, aff, optical_data, spacing_um, o2m, levels):
    optical, optical_aff = optical_native_grid(mri.shape, aff, OpticalImage(optical_data, spacing_um), o2m)
    return write_ome_zarr(path, mri, aff, optical, optical_aff, attrs={"optical_to_mri": o2m.tolist()},
                          levels=levels)


def test_ome_zarr_scales_translations_and_data(tmp_path):
    pair = make_pair(50, angle_deg=20.0, n_particles=80)
    path = tmp_path / "fused.ome.zarr"
    meta = _write(path, pair.mri_image, pair.mri_affine, pair.optical_data, pair.spacing_um,
                  pair.optical_to_mri, levels=3)
    assert meta["frame"] == "RAS"
    data, md = _read(path / "0")
    assert [a["name"] for a in md["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "millimeter" for a in md["axes"])
    ct = md["coordinateTransformations"]
    assert len(data) == 3 and len(ct) == 3
    vox = voxel_sizes(pair.mri_affine)
    # level 0 is the MRI grid itself: scale = voxel size, translation = world of voxel 0
    assert np.allclose(_affine(ct[0]), pair.mri_affine)
    assert np.array_equal(np.asarray(data[0]), np.transpose(pair.mri_image))
    # level 1: x, y halved; block centre
    assert np.allclose(ct[1][0]["scale"], [vox[2], 2 * vox[1], 2 * vox[0]])
    assert np.allclose(ct[1][1]["translation"][1:], (pair.mri_affine[:2, 3] + vox[:2] / 2)[::-1])
    assert np.asarray(data[1]).shape == (1, 32, 32)
    # optical: native pixel size, and level 0 equals the optics resampled on the grid the metadata describes
    odata, omd = _read(path / "1")
    oct0 = omd["coordinateTransformations"][0]
    assert np.allclose(oct0[0]["scale"][1:], np.asarray(pair.spacing_um[:2])[::-1] * 1e-3)
    grid = _affine(oct0)
    arr = np.transpose(np.asarray(odata[0]))
    expect = resample_optical(pair.optical_data, pair.spacing_um, pair.optical_to_mri, arr.shape, grid)
    assert np.allclose(arr, expect) and arr.max() > 100


def test_ome_zarr_oblique_mri_uses_grid_frame(tmp_path):
    orient = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    aff = mri_affine((16, 16, 1), (4.0, 4.0, 1.0), (1.0, 2.0, 0.0), orient)
    mri = np.random.default_rng(0).random((16, 16, 1)).astype(np.float32)
    o2m = np.eye(4)
    o2m[:3, :3] *= 1e-3
    o2m[:3, 3] = [0.0, 1.0, 0.0]
    meta = _write(tmp_path / "x.ome.zarr", mri, aff, np.ones((50, 50, 1), np.float32), (20.0, 20.0, 20.0),
                  o2m, levels=1)
    assert meta["frame"] == "mri_grid"
    data, md = _read(tmp_path / "x.ome.zarr" / "0")
    assert np.allclose(md["coordinateTransformations"][0][1]["translation"], 0.0)
    assert np.allclose(np.asarray(meta["mri_affine"]), aff)
    with pytest.raises(Exception, match="x, y, z"):
        write_ome_zarr(tmp_path / "bad.ome.zarr", mri[..., 0], aff, np.ones((5, 5, 1)), aff)


def test_ome_zarr_rewrite_keeps_old_store_until_new_is_complete(tmp_path, monkeypatch):
    """A failing rewrite leaves the previous complete store in place (no rmtree first)."""
    aff = mri_affine((8, 8, 1), (4.0, 4.0, 1.0))
    mri = np.ones((8, 8, 1), np.float32)
    path = tmp_path / "f.ome.zarr"
    write_ome_zarr(path, mri, aff, mri, aff, levels=1)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    import dualmode.io.ngff as ngff

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ngff, "_pyramid", boom)
    with pytest.raises(OSError):
        write_ome_zarr(path, 2 * mri, aff, mri, aff, levels=1)
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    data, _ = _read(path / "0")
    assert np.all(np.asarray(data[0]) == 1)


def test_ome_zarr_written_without_ome_zarr_py_validates_as_ngff_05(tmp_path):
    """The store is written with zarr alone; the NGFF 0.5 models of ome-zarr-models accept it."""
    import zarr
    from ome_zarr_models.v05 import BioFormats2Raw, Image

    aff = mri_affine((20, 12, 3), (4.0, 2.4, 3.0))
    mri = np.random.default_rng(2).random((20, 12, 3)).astype(np.float32)
    write_ome_zarr(tmp_path / "v.ome.zarr", mri, aff, mri, aff, levels=2,
                   channels={"mri": ("13C", "#FF00FF", (0.1, 0.5))})
    root = zarr.open_group(tmp_path / "v.ome.zarr", mode="r")
    assert BioFormats2Raw.from_zarr(root).image_paths == ["0", "1"]
    for path in ("0", "1"):
        image = Image.from_zarr(root[path])
        multiscale = image.attributes.ome.multiscales[0]
        assert [d.path for d in multiscale.datasets] == ["s0", "s1"]
    level1 = np.asarray(root["0"]["s1"])
    assert level1.shape == (3, 6, 10)  # (z, y, x): x, y halved
    np.testing.assert_allclose(level1[1, 2, 3], mri[6:8, 4:6, 1].mean(), rtol=1e-6)
    assert root["0"].attrs["ome"]["omero"]["channels"][0]["window"]["start"] == 0.1


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(37, 30, 1), (40, 26, 5)])
def test_pyramid_levels_are_block_means_of_the_previous_level(shape, order):
    """Each level is the 2 x 2 (x, y) block mean of the level before, odd edges dropped (as
    scikit-image's ``downscale_local_mean``), for C and transposed (ITK) memory layouts."""
    from skimage.transform import downscale_local_mean

    from dualmode.io.ngff import _pyramid

    rng = np.random.default_rng(5)
    arr = np.asarray((rng.standard_normal(shape) * rng.uniform(0, 1e4, shape)).astype(np.float32), order=order)
    levels, transforms = _pyramid(arr, (0.01, 0.02, 0.05), (1.0, 2.0, 3.0), 3)
    assert [lv.shape for lv in levels] == [shape[::-1], (shape[2], shape[1] // 2, shape[0] // 2),
                                           (shape[2], shape[1] // 4, shape[0] // 4)]
    expect = arr
    for level in levels[1:]:
        expect = downscale_local_mean(expect, (2, 2, 1))[: expect.shape[0] // 2, : expect.shape[1] // 2]
        expect = expect.astype(np.float32)
        np.testing.assert_allclose(level, np.transpose(expect), rtol=1e-6, atol=0)
        assert level.flags.c_contiguous and level.dtype == np.float32
    assert transforms[2][0]["scale"] == [0.05, 0.08, 0.04]
    assert np.allclose(transforms[2][1]["translation"], [3.0, 2.0 + 1.5 * 0.02, 1.0 + 1.5 * 0.01])


def test_chunks_divide_each_axis_within_16_planes_of_512_squared():
    from dualmode.io.ngff import _blocks, _chunks

    assert _chunks((21, 504, 505)) == (7, 504, 505)  # 3 whole chunks rather than 16 + 5
    assert _chunks((16, 1024, 1000)) == (16, 512, 500)
    assert _chunks((1, 8, 8)) == (1, 8, 8)
    assert _chunks((23, 1031, 1)) == (12, 344, 1)  # primes: the fewest equal parts
    blocks = list(_blocks((23, 1031, 1), (12, 344, 1)))
    assert len(blocks) == 6 and blocks[-1] == (slice(12, 23), slice(688, 1031), slice(0, 1))
    covered = np.zeros((23, 1031, 1), int)
    for block in blocks:
        covered[block] += 1
    assert np.all(covered == 1)


def test_store_encoded_in_memory_equals_the_one_zarr_writes_itself(tmp_path, monkeypatch):
    """Small stores are encoded into a MemoryStore and written out by dualmode; large ones through
    zarr's LocalStore: the same files with the same bytes either way."""
    import dualmode.io.ngff as ngff

    aff = mri_affine((20, 12, 3), (4.0, 2.4, 3.0))
    mri = np.random.default_rng(4).random((20, 12, 3)).astype(np.float32)
    opt = np.random.default_rng(5).random((45, 31, 4)).astype(np.float32)
    opt_aff = mri_affine((45, 31, 4), (4.5, 3.1, 2.0))
    write_ome_zarr(tmp_path / "memory.ome.zarr", mri, aff, opt, opt_aff)
    monkeypatch.setattr(ngff, "_IN_MEMORY_BYTES", 0)
    write_ome_zarr(tmp_path / "local.ome.zarr", mri, aff, opt, opt_aff)

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    memory, local = files(tmp_path / "memory.ome.zarr"), files(tmp_path / "local.ome.zarr")
    assert sorted(memory) == sorted(local) and "1/s2/c/0/0/0" in memory
    assert memory == local
