"""`dualmode view`: napari layers of a result folder in RAS mm (napari itself is not needed)."""

import importlib.util
import json
import os

import nibabel as nib
import numpy as np
import pytest

from dualmode.cli import main
from dualmode.conventions import apply_affine
from dualmode.io import InputError
from dualmode.view import result_layers


@pytest.fixture(scope="module")
def result(sim2d, tmp_path_factory):
    out = tmp_path_factory.mktemp("view")
    assert main(["run", sim2d, "-o", str(out), "-q"]) == 0
    return str(out / os.path.basename(sim2d))


def test_layers_are_in_ras_millimetres(result, sim2d):
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in result_layers(result)}
    assert list(layers) == ["13C", "optical", "background", "particles (MRI)",
                            "particles (optical, registered)"]
    c13 = nib.load(os.path.join(result, "c13.nii.gz"))
    data, kw, kind = layers["13C"]
    assert kind == "image" and data.shape == c13.shape[:3]
    np.testing.assert_allclose(kw["affine"], c13.affine)
    # the brightest 13C voxel, mapped by the layer affine, lies on a true particle
    with open(os.path.join(sim2d, "truth.json")) as f:
        truth = np.array([p["mri_xyz_mm"] for p in json.load(f)["particles"]])
    peak = apply_affine(kw["affine"], np.unravel_index(np.argmax(data), data.shape))
    voxel = np.linalg.norm(c13.affine[:3, :3], axis=0)
    assert np.min(np.linalg.norm((truth - peak)[:, :2], axis=1)) <= 1.5 * voxel[0]
    # registered optical detections land on the MRI detections (same world frame)
    mri, optical = layers["particles (MRI)"][0], layers["particles (optical, registered)"][0]
    assert len(mri) >= 4 and mri.shape == optical.shape
    assert np.median(np.linalg.norm(mri - optical, axis=1)) <= voxel[0]
    assert layers["optical"][1]["colormap"] == "red" and layers["background"][1]["visible"] is False


def test_bad_folder_names_the_missing_file(tmp_path, capsys):
    with pytest.raises(InputError, match="fused.nii.gz"):
        result_layers(tmp_path)
    assert main(["view", str(tmp_path)]) == 2
    assert "fused.nii.gz" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("napari") is not None, reason="napari installed")
def test_view_without_napari_says_how_to_install(result, capsys):
    assert main(["view", result]) == 2
    assert "pip install 'dualmode[view]'" in capsys.readouterr().err
