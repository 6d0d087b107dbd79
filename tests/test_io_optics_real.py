"""read_optical on real microscopy TIFFs (stardist sample images, BSD-3, tests/data/stardist)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from dualmode.io import InputError, read_optical

DATA = Path(__file__).parent / "data" / "stardist"


def test_real_2d_tiff_needs_and_takes_a_pixel_size():
    with pytest.raises(InputError) as err:  # the file has resolution 1/1 with no unit
        read_optical(DATA / "img2d.tif")
    assert err.value.field == "PhysicalSize" and "img2d.tif" in str(err.value)
    img = read_optical(DATA / "img2d.tif", pixel_size_um=[0.65, 0.65])
    pages = tifffile.imread(DATA / "img2d.tif")  # (y, x) on disk
    assert img.data.shape == (512, 512, 1) and img.spacing_um == (0.65, 0.65, 0.65)
    np.testing.assert_array_equal(img.data[:, :, 0], pages.T.astype(np.float32))


def test_real_page_stack_is_read_as_z():
    img = read_optical(DATA / "img3d.tif", pixel_size_um=[0.5, 0.5, 2.0])
    stack = tifffile.imread(DATA / "img3d.tif")  # (31 pages, 61, 57)
    assert img.data.shape == (57, 61, 31) and img.spacing_um == (0.5, 0.5, 2.0)
    np.testing.assert_array_equal(img.data, np.transpose(stack, (2, 1, 0)).astype(np.float32))


def test_real_tiff_with_resolution_tags(tmp_path):
    """Same pixels re-saved with ImageJ µm calibration: spacing read from the file."""
    pages = tifffile.imread(DATA / "img2d.tif")
    tifffile.imwrite(tmp_path / "cal.tif", pages, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "um"})
    img = read_optical(tmp_path / "cal.tif")
    assert img.spacing_um[:2] == pytest.approx((0.25, 0.25))
