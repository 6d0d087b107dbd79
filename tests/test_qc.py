"""qc.png as a scientist reads it: 150 dpi, particles visible in H and on the fused panel, a picture for a failure."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from dualmode.qc import CHANNEL_COLORS, fused_rgb, h_window


@pytest.fixture(scope="module")
def out(demo_batch):
    return demo_batch[0]


def _png(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(int), img.info.get("dpi")


def _truth(demo_batch):
    with open(demo_batch[2] / "demo" / "truth.json") as f:
        return json.load(f)["particles"]


def test_qc_png_is_150_dpi_and_shows_the_fusion(out):
    rgb, dpi = _png(out / "demo" / "qc.png")
    assert dpi is not None and round(dpi[0]) == 150 and rgb.shape[:2] == (1010, 1920)
    # the fused panel (second panel of the bottom row) shows both channels: magenta 13C and green optics
    panel = rgb[1010 - 80 - 370:1010 - 80, 40 + 470:40 + 470 + 370]
    magenta = (panel[..., 0] > 120) & (panel[..., 2] > 120) & (panel[..., 1] < 0.6 * panel[..., 0])
    green = (panel[..., 1] > 100) & (panel[..., 0] < 0.6 * panel[..., 1])
    both = (panel > 150).all(axis=2)  # white-pink: a particle seen by both modes
    assert magenta.sum() > 100 and (green | both).sum() > 100 and both.sum() > 50


def test_h_window_starts_at_three_sigma_and_shows_typical_particles():
    rng = np.random.default_rng(0)
    h = np.abs(rng.normal(0, 1.0, (64, 64)))
    h[10, 10], h[20, 20], h[30, 30] = 200.0, 10.0, 12.0  # one bright particle, two typical ones
    lo, hi = h_window(h, 1.0)
    assert lo == 3.0 and hi == pytest.approx(2 * 12.0)  # median of the voxels above 5 sigma is 12
    rgb = fused_rgb(h[..., None].max(axis=2), np.zeros((64, 64)), 1.0)
    magenta = np.array([int(CHANNEL_COLORS["13C"][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert np.allclose(rgb[30, 30] / rgb[30, 30].max(), magenta) and rgb[30, 30].max() > 0.6
    assert rgb[20, 20].max() > 0.5 and rgb[10, 10].max() == 1.0
    assert rgb[h < 3.0].max() == 0.0  # noise below 3 sigma stays black


def test_h_panel_circles_every_matched_particle(out):
    import csv

    import nibabel as nib

    rgb, _ = _png(out / "demo" / "qc.png")
    top, left = 1010 - 560 - 370, 40 + 2 * 470  # the H panel's box (a square FOV fills it)
    cyan = (rgb[..., 0] < 90) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)
    aff = nib.load(out / "demo" / "c13.nii.gz").affine
    lo = aff[:2, 3] - 0.1  # voxel corner, mm
    with open(out / "demo" / "particles.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 4
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    for r in rows:
        x, y = float(r["mri_x_mm"]), float(r["mri_y_mm"])
        col = left + (x - lo[0]) / 12.8 * 370
        row = top + (1 - (y - lo[1]) / 12.8) * 370  # y up
        d = np.hypot(yy - row, xx - col)
        assert cyan[(d > 4) & (d < 13)].sum() > 15, (x, y)  # a ring around it
def test_failed_folder_gets_a_qc_png_with_its_error(out, demo_batch):
    assert os.path.isfile(out / "nomatch" / "qc.png")
    rgb, _ = _png(out / "nomatch" / "qc.png")
    red_text = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red_text[:60].sum() > 50  # the red "REGISTRATION FAILED" title
    # the best rejected hypothesis (lime crosses) is drawn on the 13C detections panel
    panel = rgb[1010 - 80 - 370:1010 - 80, 40 + 470:40 + 470 + 370]
    lime = (panel[..., 1] > 180) & (panel[..., 0] < 120) & (panel[..., 2] < 120)
    assert lime.sum() > 30
    with open(out / "nomatch" / "report.json") as f:
        assert "no consistent particle match" in json.load(f)["registration"]["error"]


@pytest.fixture(scope="module")
def demo_page(demo_batch):
    """The demo folder analysed again and its QC page rendered in memory."""
    from dualmode.pipeline import analyse_folder
    from dualmode.qc import render_qc

    result = analyse_folder(demo_batch[2] / "demo")
    page = render_qc(result)
    return result, page, np.asarray(page.render()).astype(int)


def test_text_never_overlaps_and_every_box_holds_ink(demo_page):
    """Every text box of the page is disjoint from the others (titles, labels, colour-bar numbers, legend)."""
    _, page, rgb = demo_page
    boxes = page.text_boxes
    assert len(boxes) > 20
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    for x0, y0, x1, y1 in boxes:  # the boxes are where glyphs were drawn: not blank
        patch = rgb[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))]
        assert np.ptp(patch.reshape(-1, 3), axis=0).max() > 100, (x0, y0, x1, y1)


def test_magma_table_is_matplotlibs():
    from matplotlib import colormaps

    from dualmode.qc_colormaps import lut

    expect = colormaps["magma"](np.linspace(0.0, 1.0, 256))[:, :3] * 255
    assert np.abs(lut("magma").astype(float) - expect).max() <= 0.5
    assert lut("gray")[0].tolist() == [0, 0, 0] and lut("gray")[255].tolist() == [255, 255, 255]


def test_background_panel_shows_b_through_magma(demo_page):
    """The B panel (top right) is |B| on the shared 0..max(S+, S-, B) window, x right and y (anterior) up."""
    from matplotlib import colormaps

    result, _, rgb = demo_page
    mip = lambda a: np.abs(np.asarray(a)).max(axis=2)  # noqa: E731
    pol = np.asarray(result.acquisition.polarization)
    b = mip(result.lockin.background)
    hi = max(mip(result.shots[np.flatnonzero(pol > 0)[0]]).max(), mip(result.shots[np.flatnonzero(pol < 0)[0]]).max(),
             b.max())
    top, left, size = 1010 - 560 - 370, 40 + 3 * 470, 370  # square FOV: the panel fills its box
    rows, cols = np.mgrid[top + 40:top + size - 40:7, left + 40:left + size - 40:7]
    ix = ((cols - left + 0.5) * b.shape[0] / size).astype(int)
    iy = b.shape[1] - 1 - ((rows - top + 0.5) * b.shape[1] / size).astype(int)
    expect = colormaps["magma"](np.clip(b[ix, iy] / hi, 0, 1))[..., :3] * 255
    diff = np.abs(rgb[rows, cols] - expect).max(axis=-1)
    assert np.median(diff) <= 2 and np.mean(diff <= 8) > 0.97
    assert np.ptp(b[ix, iy]) > 0.5 * hi  # the window shows the phantom, not a flat field
