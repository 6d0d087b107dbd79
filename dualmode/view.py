"""napari layers of dualmode files, in RAS millimetres, shown as radiologists and microscopists expect.

napari displays the last two axes of a layer, the last one horizontal. Arrays are
therefore handed to napari as ``[z, y, x]`` (the transpose of dualmode's ``[x, y, z]``)
with the NIfTI affine permuted to match, so napari's world axes are (S, A, R) in mm, a 2D
acquisition is the axial plane, a 3D one opens on axial slices with the slider along z,
and the camera is turned so that anterior is up and right is right (the orientation of
``qc.png`` and of the OME-TIFF). The 13C image is windowed from 3 noise σ (``report.json``)
to its peak with the square-root gamma of ``qc.png``; channel colours are those of
``qc.png`` (:data:`dualmode.qc.CHANNEL_COLORS`: 13C magenta, optical green). Particles
are points: 13C detections as cyan circles, registered optical detections as lime
crosses.

:func:`result_layers`, :func:`nifti_layers` and :func:`acquisition_layers` return napari
layer-data tuples ``(data, kwargs, layer_type)``; the napari plugin
(:mod:`dualmode.napari`) serves them to ``napari OUT/name`` and drag and drop, and
:func:`show` / :func:`screenshot` back ``dualmode view``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from dualmode.errors import InputError

#: napari colormap per fused channel: the colours of ``qc.png`` and ``fused.ome.tif``.
COLORMAPS = {"13C": "magenta", "optical": "green"}
#: World axis names of every layer (napari order: slider, vertical, horizontal).
AXIS_LABELS = ("S (z)", "A (y)", "R (x)")

LayerData = tuple[np.ndarray, dict, str]


def napari_array(data_xyz: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data[x, y, z, ...]`` and its voxel -> RAS affine as napari's ``[..., z, y, x]`` and (S, A, R) affine.

    Examples
    --------
    >>> a, aff = napari_array(np.zeros((4, 3, 2)), np.diag([0.5, 0.25, 2.0, 1.0]))
    >>> a.shape, np.diag(aff).tolist()
    ((2, 3, 4), [2.0, 0.25, 0.5, 1.0])
    """
    data = np.asarray(data_xyz)
    spatial = list(range(3))
    extra = list(range(3, data.ndim))
    out = np.transpose(data, extra[::-1] + spatial[::-1])
    rev = np.eye(4)[[2, 1, 0, 3]]
    return out, rev @ np.asarray(affine, float) @ rev


def _noise_sigma(result_dir: str) -> float | None:
    try:
        with open(os.path.join(result_dir, "report.json")) as f:
            return float(json.load(f)["signflip"]["noise_sigma"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def c13_window(data: np.ndarray, sigma: float | None) -> tuple[float, float]:
    """Contrast limits of a 13C image: :func:`dualmode.qc.h_window` (3 noise σ to twice the typical
    particle); without a known σ, the median to the maximum."""
    from dualmode.qc import h_window

    if sigma:
        return h_window(data, sigma)
    finite = data[np.isfinite(data)]
    lo, hi = (float(np.median(finite)), float(finite.max())) if finite.size else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0


def _optical_window(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 100])
    return float(lo), float(hi if hi > lo else lo + 1)


def _load_nifti(path: str):
    import nibabel as nib

    if not os.path.isfile(path):
        raise InputError(path, "not found (is this a dualmode result folder?)")
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector image: components on dim 5
        data = data[:, :, :, 0, :]
    while data.ndim < 3:
        data = data[..., None]
    return img, data


def _channel_names(descrip, n: int) -> list[str]:
    """Names from the header written by the pipeline, ``"dualmode fused: c0 13C, c1 optical"``."""
    text = descrip.decode(errors="replace") if isinstance(descrip, bytes) else str(descrip)
    names = []
    for part in text.partition(":")[2].split(","):
        tag, _, name = part.strip().partition(" ")
        if tag.startswith("c") and name.strip():
            names.append(name.strip())
    return names if len(names) == n else [f"channel {c}" for c in range(n)]


def _image(data_xyz, affine, name, **kwargs) -> LayerData:
    data, aff = napari_array(data_xyz, affine)
    return data, {"name": name, "affine": aff, "axis_labels": AXIS_LABELS, "units": "mm", **kwargs}, "image"


def _channel_layer(channel, affine, name, sigma) -> LayerData:
    if name == "13C":
        return _image(channel, affine, name, colormap=COLORMAPS[name], blending="additive", gamma=0.5,
                      contrast_limits=c13_window(channel, sigma))
    return _image(channel, affine, name, colormap=COLORMAPS.get(name, "gray"), blending="additive",
                  contrast_limits=_optical_window(channel))


def _points(path: str, prefix: str) -> np.ndarray:
    """``(n, 3)`` RAS mm coordinates from columns ``<prefix>_x_mm, _y_mm, _z_mm``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [f"{prefix}_{a}_mm" for a in "xyz"]
    if rows and not all(c in rows[0] for c in cols):
        raise InputError(path, f"missing columns {cols}", "particles")
    return np.array([[float(r[c]) for c in cols] for r in rows]).reshape(-1, 3)


def particle_layers(particles_csv: str, voxel_mm: float) -> list[LayerData]:
    """Points layers of ``particles.csv`` in (S, A, R) mm: 13C cyan circles, optical lime crosses."""
    layers = []
    for prefix, name, symbol, color, size in (("mri", "particles (13C)", "ring", "cyan", 5.0),
                                              ("optical_in_mri", "particles (optical, registered)", "cross", "lime",
                                               1.0)):
        pts = _points(particles_csv, prefix)[:, ::-1]
        layers.append((pts, {"name": name, "size": size * voxel_mm, "symbol": symbol, "face_color": color,
                             "border_width": 0, "opacity": 0.8, "axis_labels": AXIS_LABELS, "units": "mm"}, "points"))
    return layers


def result_layers(result_dir: str | os.PathLike) -> list[LayerData]:
    """napari layer-data tuples ``(data, kwargs, layer_type)`` of one result folder.

    Parameters
    ----------
    result_dir : path
        ``OUT/<name>/`` written by ``dualmode run``: uses ``fused.nii.gz`` (or ``c13.nii.gz``
        for a folder that was not registered), ``background.nii.gz``, ``particles.csv`` and
        the noise σ in ``report.json`` when present.

    Returns
    -------
    list of tuple
        ``"image"`` layers 13C (magenta, from 3σ) and optical (green), the background
        (hidden), and ``"points"`` layers of the particles, all in (S, A, R) mm.

    Examples
    --------
    >>> [kw["name"] for _, kw, _ in result_layers("out/demo")]  # doctest: +SKIP
    ['13C', 'optical', 'background', 'particles (13C)', 'particles (optical, registered)']
    """
    result_dir = os.fspath(result_dir)
    sigma = _noise_sigma(result_dir)
    fused_path = os.path.join(result_dir, "fused.nii.gz")
    c13_path = os.path.join(result_dir, "c13.nii.gz")
    if not os.path.isfile(fused_path) and os.path.isfile(c13_path):  # registration failed: 13C only
        img, data = _load_nifti(c13_path)
        layers = [_channel_layer(data[:, :, :], img.affine, "13C", sigma)]
    else:
        img, data = _load_nifti(fused_path)
        if data.ndim != 4:
            raise InputError(fused_path, f"expected [x, y, z, channel] data, got shape {data.shape}")
        names = _channel_names(img.header["descrip"].item(), data.shape[-1])
        layers = [_channel_layer(data[..., c], img.affine, name, sigma) for c, name in enumerate(names)]
    affine = np.asarray(img.affine, float)
    background = os.path.join(result_dir, "background.nii.gz")
    if os.path.isfile(background):
        bg, bdata = _load_nifti(background)
        layers.append(_image(bdata, bg.affine, "background", visible=False, colormap="gray"))
    particles = os.path.join(result_dir, "particles.csv")
    if os.path.isfile(particles):
        layers += particle_layers(particles, float(np.min(np.linalg.norm(affine[:3, :3], axis=0))))
    return layers


def nifti_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layers of one NIfTI file in (S, A, R) mm: one per vector component, or a time/shot slider."""
    path = os.fspath(path)
    img, data = _load_nifti(path)
    name = os.path.basename(path).split(".nii")[0]
    if data.ndim == 4 and img.header.get_intent()[0] == "vector":
        names = _channel_names(img.header["descrip"].item(), data.shape[-1])
        return [_channel_layer(data[..., c], img.affine, n, None) for c, n in enumerate(names)]
    kwargs = {"colormap": COLORMAPS["13C"], "gamma": 0.5} if name in ("c13", "13C") else {"colormap": "gray"}
    return [_image(data, img.affine, name, **kwargs)]


def acquisition_layers(folder: str | os.PathLike) -> list[LayerData]:
    """Layers of an acquisition folder: every shot's magnitude (shot slider), H, B, and the optics.

    The shots are reconstructed as the pipeline does (no registration): the 13C layers are
    in RAS mm; the optical image, not registered yet, is in its own frame (µm shown as mm,
    hidden by default).
    """
    from dualmode.io import load_acquisition
    from dualmode.pipeline import PipelineOptions, reconstruct_and_lock_in

    acq = load_acquisition(folder)
    affine = acq.kspace.header.affine()
    lock, shots = reconstruct_and_lock_in(acq, PipelineOptions())
    pol = "".join("+" if p > 0 else "-" for p in acq.polarization)
    shots_xyzs = np.moveaxis(np.abs(shots), 0, -1).astype(np.float32)
    layers = [_image(shots_xyzs, affine, f"shots |S| ({pol})", colormap="magma"),
              _channel_layer(np.abs(lock.signal).astype(np.float32), affine, "13C", lock.noise_sigma),
              _image(np.abs(lock.background).astype(np.float32), affine, "background", visible=False)]
    if acq.optics is not None:
        spacing_mm = np.asarray(acq.optics.spacing_um, float) / 1000.0
        layers.append(_image(acq.optics.data.astype(np.float32), np.diag([*spacing_mm, 1.0]),
                             "optical (own frame, not registered)", colormap=COLORMAPS["optical"],
                             blending="additive", visible=False))
    return layers


def _colormap(label: str, color: str):
    """A napari colormap from black to ``color`` (``"RRGGBB"``), named after the channel."""
    from napari.utils.colormaps import Colormap

    rgb = [int(color[i:i + 2], 16) / 255.0 for i in (0, 2, 4)]
    return Colormap([[0.0, 0.0, 0.0, 1.0], [*rgb, 1.0]], name=f"{label} {color}")


def ome_zarr_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layers of ``fused.ome.zarr`` (or one of its images): every image in one world frame (mm).

    Reads the NGFF metadata with ome-zarr-py: each image's level-0 ``scale`` and
    ``translation`` become the layer's ``scale`` and ``translate`` (so the MRI and the
    registered optics overlay), the pyramid is a multiscale layer, and the ``omero`` block
    gives the channel name, colour and window.
    """
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = os.fspath(path)
    images = [path]
    series_file = os.path.join(path, "OME", "zarr.json")
    if os.path.isfile(series_file):
        with open(series_file) as f:
            images = [os.path.join(path, s) for s in json.load(f)["attributes"]["ome"]["series"]]
    layers = []
    for image in images:
        node = list(Reader(parse_url(image))())[0]
        meta = node.metadata
        level0 = meta["coordinateTransformations"][0]
        scale = next(t["scale"] for t in level0 if t["type"] == "scale")
        translate = next((t["translation"] for t in level0 if t["type"] == "translation"), [0.0] * len(scale))
        channel = meta.get("channel_names", [meta.get("name", "image")])[0]
        kwargs = {"name": channel, "scale": scale, "translate": translate, "multiscale": len(node.data) > 1,
                  "blending": "additive", "axis_labels": AXIS_LABELS, "units": "mm"}
        omero = _omero_channel(image)
        if omero:
            kwargs["colormap"] = _colormap(omero["label"], omero["color"])
            kwargs["contrast_limits"] = (omero["window"]["start"], omero["window"]["end"])
        layers.append((list(node.data) if len(node.data) > 1 else node.data[0], kwargs, "image"))
    return layers


def _omero_channel(image: str) -> dict | None:
    try:
        with open(os.path.join(image, "zarr.json")) as f:
            return json.load(f)["attributes"]["ome"]["omero"]["channels"][0]
    except (OSError, KeyError, IndexError, ValueError):
        return None


def orient(viewer) -> None:
    """Axis labels, anterior up and right to the right (napari's vertical axis points up)."""
    viewer.dims.axis_labels = AXIS_LABELS
    camera = viewer.camera
    if hasattr(camera, "orientation2d"):  # napari >= 0.6; older versions show anterior down
        camera.orientation2d = ("up", "right")
    viewer.reset_view()


def _populate(viewer, layers: list[LayerData]) -> None:
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    orient(viewer)


def _napari():
    try:
        import napari
    except ImportError as err:
        raise ImportError("napari is not installed: pip install 'dualmode[view]'") from err
    return napari


@contextlib.contextmanager
def virtual_display():
    """A display for Qt on a server: the current one, else a private ``Xvfb`` for the block.

    napari needs OpenGL, which Qt's ``offscreen`` platform does not provide; Xvfb with Mesa
    does (Debian: ``apt install xvfb``).
    """
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or not sys.platform.startswith("linux"):
        yield None
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("no display and no Xvfb: install xvfb (apt install xvfb) or run under xvfb-run")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = b""
        while not number.endswith(b"\n"):  # keep the pipe open: Xvfb dies on a write to a closed one
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        number = number.decode().strip()
        if not number:
            raise RuntimeError(f"{xvfb} did not start")
        os.environ["DISPLAY"] = f":{number}"
        yield os.environ["DISPLAY"]
    finally:
        os.close(read_fd)
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        proc.wait(timeout=10)


def screenshot(result_dir: str | os.PathLike, path: str | os.PathLike, size: tuple[int, int] = (800, 800)) -> str:
    """Render :func:`result_layers` as napari shows them to a PNG, on a server too (Xvfb).

    Returns the path written.

    Examples
    --------
    >>> screenshot("out/demo", "demo-napari.png")  # doctest: +SKIP
    'demo-napari.png'
    """
    layers = result_layers(result_dir)
    napari = _napari()
    with virtual_display():
        viewer = napari.Viewer(title=f"dualmode: {os.path.basename(os.path.abspath(result_dir))}")
        try:
            viewer.window.resize(size[0] + 420, size[1] + 160)  # room for the layer list and the canvas
            _populate(viewer, layers)
            viewer.screenshot(os.fspath(path), canvas_only=True, flash=False)
        finally:
            viewer.close()
            from qtpy.QtWidgets import QApplication

            app = QApplication.instance()
            if app is not None:  # release the X connection before the private display goes away
                app.processEvents()
    return os.fspath(path)


def show(result_dir: str | os.PathLike) -> None:
    """Open :func:`result_layers` in a napari viewer and run its event loop (needs a display)."""
    layers = result_layers(result_dir)  # bad folders fail before the GUI starts
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RuntimeError("no display: use `dualmode view RESULT --screenshot FILE.png` on a server")
    napari = _napari()
    viewer = napari.Viewer(title=f"dualmode: {os.path.basename(os.path.abspath(result_dir))}")
    _populate(viewer, layers)
    napari.run()
