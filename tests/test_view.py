"""`dualmode view` layers: RAS mm, napari axis order, colours and windows of qc.png (napari itself not needed)."""

import importlib.util
import json
import os

import nibabel as nib
import numpy as np
import pytest

from dualmode.cli import main
from dualmode.conventions import apply_affine
from dualmode.io import InputError
from dualmode.napari import get_reader
from dualmode.qc import CHANNEL_COLORS
from dualmode.view import COLORMAPS, napari_array, nifti_layers, result_layers


@pytest.fixture(scope="module")
def result(demo_batch):
    return str(demo_batch[0] / "demo")


def _truth(demo_batch):
    with open(demo_batch[2] / "demo" / "truth.json") as f:
        return np.array([p["mri_xyz_mm"] for p in json.load(f)["particles"]])


def test_layers_are_axial_in_ras_millimetres(result, demo_batch):
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in result_layers(result)}
    assert list(layers) == ["13C", "optical", "background", "particles (13C)", "particles (optical, registered)"]
    c13 = nib.load(os.path.join(result, "c13.nii.gz"))
    data, kw, kind = layers["13C"]
    # napari shows the last two axes: [z, y, x] puts the 2D slice (z of length 1) on the slider
    assert kind == "image" and data.shape == c13.shape[::-1] == (1, 64, 64)
    assert kw["axis_labels"] == ("S (z)", "A (y)", "R (x)") and kw["units"] == "mm"
    # the brightest 13C voxel, mapped by the layer affine to (S, A, R), lies on a true particle
    peak_sar = apply_affine(kw["affine"], np.unravel_index(np.argmax(data), data.shape))
    voxel = np.linalg.norm(c13.affine[:3, :3], axis=0)
    truth = _truth(demo_batch)
    assert np.min(np.linalg.norm((truth[:, ::-1] - peak_sar)[:, 1:], axis=1)) <= 1.5 * voxel[0]
    # registered optical detections land on the 13C detections (same world frame, (S, A, R) columns)
    mri, optical = layers["particles (13C)"][0], layers["particles (optical, registered)"][0]
    assert len(mri) >= 4 and mri.shape == optical.shape
    assert np.median(np.linalg.norm(mri - optical, axis=1)) <= voxel[0]
    assert np.min(np.linalg.norm(truth[:, None, ::-1] - mri[None], axis=2), axis=0).max() <= 1.5 * voxel[0]


def test_colours_and_windows_match_qc(result):
    layers = {kw["name"]: kw for _, kw, _ in result_layers(result)}
    # napari's "magenta" and "green" are exactly the qc.png / OME-TIFF channel colours
    assert CHANNEL_COLORS == {"13C": "#FF00FF", "optical": "#00FF00"}
    assert COLORMAPS == {"13C": "magenta", "optical": "green"}
    assert layers["13C"]["colormap"] == "magenta" and layers["optical"]["colormap"] == "green"
    with open(os.path.join(result, "report.json")) as f:
        sigma = json.load(f)["signflip"]["noise_sigma"]
    lo, hi = layers["13C"]["contrast_limits"]
    assert lo == pytest.approx(3 * sigma) and hi > 5 * sigma
    assert layers["background"]["visible"] is False


def test_napari_array_reverses_axes_and_affine():
    rng = np.random.default_rng(0)
    data = rng.random((5, 4, 3))
    aff = np.array([[0.0, 0.5, 0.0, 1.0], [-0.25, 0.0, 0.0, 2.0], [0.0, 0.0, 2.0, 3.0], [0, 0, 0, 1]])
    arr, naff = napari_array(data, aff)
    idx = np.array([4, 1, 2])
    assert arr[tuple(idx[::-1])] == data[tuple(idx)]
    np.testing.assert_allclose(apply_affine(naff, idx[::-1]), apply_affine(aff, idx)[::-1])


def test_vector_nifti_opens_as_one_layer_per_component(result):
    names = [kw["name"] for _, kw, _ in nifti_layers(os.path.join(result, "fused.nii.gz"))]
    assert names == ["13C", "optical"]
    (data, kw, _), = nifti_layers(os.path.join(result, "optical_on_mri.nii.gz"))
    assert data.shape == (1, 64, 64) and kw["colormap"] == "gray"


def test_plugin_reader_claims_only_dualmode_paths(result, demo_batch, tmp_path):
    assert get_reader(result) is not None
    assert get_reader(str(demo_batch[2] / "demo")) is not None  # an acquisition folder
    assert get_reader(os.path.join(result, "c13.nii.gz")) is not None
    assert get_reader(str(tmp_path)) is None and get_reader(os.path.join(result, "qc.png")) is None
    layers = get_reader(str(demo_batch[2] / "demo"))(str(demo_batch[2] / "demo"))
    names = [kw["name"] for _, kw, _ in layers]
    assert names[:2] == ["shots |S| (+-+-)", "13C"] and layers[0][0].shape == (4, 1, 64, 64)


def test_failed_folder_opens_its_13c(demo_batch):
    names = [kw["name"] for _, kw, _ in result_layers(demo_batch[0] / "nomatch")]
    assert names == ["13C", "background"]


def test_bad_folder_names_the_missing_file(tmp_path, capsys):
    with pytest.raises(InputError, match="fused.nii.gz"):
        result_layers(tmp_path)
    assert main(["view", str(tmp_path)]) == 2
    assert "fused.nii.gz" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("napari") is not None, reason="napari installed")
def test_view_without_napari_says_how_to_install(result, capsys):
    assert main(["view", result, "--screenshot", "x.png"]) == 2
    assert "pip install 'dualmode[view]'" in capsys.readouterr().err


def test_view_without_a_display_says_to_use_screenshot(result, monkeypatch, capsys):
    if not os.sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux servers")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", result]) == 2  # a clear message instead of Qt's abort (rc 134)
    assert "--screenshot" in capsys.readouterr().err
