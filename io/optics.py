"""Fluorescence images: OME-TIFF / TIFF with physical pixel sizes.

In memory an optical image is ``data[x, y, z]`` (see :mod:`dualmode.conventions`)
with ``spacing_um`` per axis; on disk OME-TIFF pages are ``[(T|C), Z, Y, X]``.
Modulated acquisitions (NV fluorescence switched by microwave or field) store
frames along ``T`` with ``states`` giving the modulation of each frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dualmode.errors import InputError, check_allocation

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4}


@dataclass
class OpticalImage:
    """Fluorescence image ``data[x, y, z]`` with pixel size in µm.

    ``frames[t, x, y, z]`` and ``states[t]`` hold optional modulated frames
    (state 1 = NV modulation on, 0 = off, or a phase in radians for sinusoidal
    modulation); ``data`` is then their mean unless given separately.
    """

    data: np.ndarray
    spacing_um: tuple[float, float, float]
    source: str = ""
    frames: np.ndarray | None = None
    states: np.ndarray | None = None

    def affine(self) -> np.ndarray:
        """Pixel index -> optical µm (origin at the first pixel centre)."""
        from dualmode.conventions import optical_affine

        return optical_affine(self.spacing_um)


def _ome_color(hex_rgb: str) -> int:
    """OME ``Color``: RGBA packed in a signed 32-bit integer (``"#FF00FF"`` -> -16711681)."""
    rgba = (int(hex_rgb.lstrip("#")[:6], 16) << 8) | 0xFF
    return rgba - (1 << 32) if rgba >= 1 << 31 else rgba


def write_ome_tiff(
    path: str | os.PathLike,
    data_xyz: np.ndarray,
    spacing_um,
    channel_names: list[str] | None = None,
    *,
    name: str | None = None,
    channel_colors: list[str] | None = None,
    rows_anterior_first: bool = False,
    description: str | None = None,
) -> None:
    """Write ``data[x, y, z]`` or ``data[c, x, y, z]`` as OME-TIFF (CZYX on disk).

    Parameters
    ----------
    path : path-like
    data_xyz : ndarray
        ``[x, y, z]`` or ``[c, x, y, z]``.
    spacing_um : sequence of float
        Pixel size along x, y, z in µm (``PhysicalSize*``).
    channel_names : list of str, optional
    name : str, optional
        OME ``Image/@Name`` (viewers show it as the title).
    channel_colors : list of str, optional
        ``"#RRGGBB"`` per channel, stored as OME ``Channel/@Color``.
    rows_anterior_first : bool
        Store the y axis reversed, so that viewers, which draw row 0 at the top, show the
        last y index (anterior in RAS) up; the choice is stated in the ``Description``.
    description : str, optional
        Free text for ``Image/Description`` (the orientation note is appended).

    Examples
    --------
    >>> write_ome_tiff("x.ome.tif", np.zeros((4, 3, 1)), (10, 10, 10), ["nv"],
    ...                name="sample", channel_colors=["#00FF00"])  # doctest: +SKIP
    """
    import tifffile

    arr = np.asarray(data_xyz)
    if arr.ndim == 3:
        arr = arr[None]
    if rows_anterior_first:
        arr = arr[:, :, ::-1]
    czyx = np.ascontiguousarray(np.transpose(arr, (0, 3, 2, 1)))
    sx, sy, sz = (float(s) for s in spacing_um)
    meta = {
        "axes": "CZYX",
        "PhysicalSizeX": sx, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": sy, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": sz, "PhysicalSizeZUnit": "µm",
    }
    if name:
        meta["Name"] = name
    orientation = ("rows run from the last y index (anterior) to the first (posterior); columns along +x "
                   "(right); planes along +z (superior)" if rows_anterior_first else
                   "rows run along +y, columns along +x, planes along +z of the source array")
    meta["Description"] = (description + "; " if description else "") + orientation
    channel = {}
    if channel_names:
        channel["Name"] = list(channel_names)
    if channel_colors:
        channel["Color"] = [_ome_color(c) for c in channel_colors]
    if channel:
        meta["Channel"] = channel
    meta["UUID"] = _content_uuid(czyx, meta)  # reproducible files: the same image gives the same bytes
    tifffile.imwrite(os.fspath(path), czyx, ome=True, metadata=meta, compression="zlib")


def _content_uuid(array: np.ndarray, meta: dict) -> str:
    """``urn:uuid:`` derived from the pixels and metadata (sha256), not from the clock."""
    import hashlib
    import json
    import uuid

    h = hashlib.sha256(np.ascontiguousarray(array).tobytes())
    h.update(f"{array.dtype.str}{array.shape}{json.dumps(meta, sort_keys=True)}".encode())
    return f"urn:uuid:{uuid.UUID(bytes=h.digest()[:16], version=5)}"


def write_ome_frames(path, frames_txyz: np.ndarray, spacing_um) -> None:
    """Write modulated frames ``[t, x, y, z]`` as OME-TIFF (TZYX on disk)."""
    import tifffile

    tzyx = np.ascontiguousarray(np.transpose(np.asarray(frames_txyz), (0, 3, 2, 1)))
    sx, sy, sz = (float(s) for s in spacing_um)
    meta = {"axes": "TZYX", "PhysicalSizeX": sx, "PhysicalSizeY": sy, "PhysicalSizeZ": sz,
            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"}
    tifffile.imwrite(os.fspath(path), tzyx, ome=True, metadata=meta, compression="zlib")


def _ome_spacing(tf) -> list[float | None]:
    import tifffile

    try:
        pixels = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]
    except Exception:
        return [None, None, None]
    if isinstance(pixels, list):
        pixels = pixels[0]
    pixels = pixels.get("Pixels", {})
    out = []
    for ax in "XYZ":
        val = pixels.get(f"PhysicalSize{ax}")
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
        out.append(None if val is None else float(val) * _UNIT_TO_UM.get(unit, np.nan))
    return out


def _tiff_spacing(tf) -> list[float | None]:
    """Pixel size from ImageJ metadata or TIFF resolution tags (µm), else None."""
    ij = tf.imagej_metadata or {}
    page = tf.pages[0]
    out = [None, None, None]
    unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
    scale = _UNIT_TO_UM.get(unit)
    res = page.tags.get("XResolution"), page.tags.get("YResolution")
    resunit = page.tags.get("ResolutionUnit")
    if res[0] is not None and res[1] is not None:
        if scale is None and resunit is not None:
            scale = {2: 25400.0, 3: 10000.0}.get(int(resunit.value))
        if scale is not None:
            for i, tag in enumerate(res):
                num, den = tag.value
                if num > 0:
                    out[i] = scale * den / num
    if "spacing" in ij and scale is not None:
        out[2] = float(ij["spacing"]) * scale
    return out


#: More TIFF pages than this (or a page chain that loops) is refused as corrupt.
MAX_TIFF_PAGES = 100_000


def _check_page_chain(tf, path: str) -> None:
    """Walk the IFD chain once: a corrupt file can loop it forever (tifffile 2026.3 does not stop)."""
    seen = set()
    for i, page in enumerate(tf.pages):
        if page.offset in seen or i >= MAX_TIFF_PAGES:
            raise InputError(path, f"corrupt TIFF: page chain loops or exceeds {MAX_TIFF_PAGES} pages at page {i}",
                             "IFD")
        seen.add(page.offset)


def _check_uncompressed_size(tf, series, path: str) -> None:
    """An uncompressed image cannot hold more pixel bytes than the file (tifffile zero-fills
    missing strips, so a corrupt 2 kB file could otherwise decode as gigabytes)."""
    page = tf.pages.first
    own_file = all(p is None or p.parent is tf for p in series.pages)  # multi-file OME: skip
    if own_file and int(page.compression) == 1:
        need = int(np.prod(series.shape, dtype=np.int64)) * max(int(page.bitspersample), 1) // 8
        have = os.path.getsize(path)
        if need > have:
            raise InputError(path, f"uncompressed image {series.shape} needs {need} bytes, file has {have}: "
                             "truncated or corrupt", "shape")


def read_optical(path: str | os.PathLike, pixel_size_um=None, threads: int = 1) -> OpticalImage:
    """Read a TIFF/OME-TIFF fluorescence image into :class:`OpticalImage`.

    Parameters
    ----------
    path : path-like
        ``.ome.tif`` (physical sizes from OME-XML) or plain TIFF (ImageJ/resolution tags).
    pixel_size_um : sequence of 2 or 3 float, optional
        Override or supply the pixel size; required when the file has none.
    threads : int
        Threads decoding compressed strips and pages (tifffile ``maxworkers``; the same pixels
        for any count).

    Raises
    ------
    InputError
        Unreadable/corrupt file, missing physical size, unsupported axes.
    """
    import tifffile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty (0 bytes)")
    try:
        with tifffile.TiffFile(path) as tf:
            _check_page_chain(tf, path)
            series = tf.series[0]
            axes = series.axes.upper()
            check_allocation(path, "shape", series.shape, series.dtype.itemsize)
            _check_uncompressed_size(tf, series, path)
            arr = series.asarray(maxworkers=max(1, int(threads)))  # compressed strips/pages decoded at once
            spacing = _ome_spacing(tf) if tf.is_ome else _tiff_spacing(tf)
    except InputError:
        raise
    except Exception as err:  # tifffile raises many types on corrupt data
        raise InputError(path, f"not a readable TIFF ({type(err).__name__}: {err})") from None
    try:
        arr, axes = _squeeze_to(arr, axes)
    except ValueError as err:
        raise InputError(path, str(err), "axes") from None
    if pixel_size_um is not None:
        given = [float(v) for v in pixel_size_um]
        spacing = (given + [given[-1]])[:3] if len(given) == 2 else given
    if spacing[2] is None and arr.shape[-1] == 1:  # 2D image: z spacing is a placeholder
        spacing[2] = spacing[0]
    if any(s is None or not np.isfinite(s) or s <= 0 for s in spacing):
        raise InputError(path, f"missing or invalid physical pixel size {spacing}; pass --optical-pixel-size", "PhysicalSize")
    if not np.all(np.isfinite(arr)):
        raise InputError(path, "image contains NaN or Inf", "data")
    data = arr.astype(np.float32, copy=False)  # arr is ours: no second copy of a float32 stack
    frames = None
    if data.ndim == 4:  # frames or channels first
        frames, data = data, data.mean(axis=0)
    return OpticalImage(data, tuple(float(s) for s in spacing), source=path, frames=frames)


def _squeeze_to(arr: np.ndarray, axes: str):
    """Reorder any of T/C/Z/Y/X (others must be length 1) to ``[(t,) x, y, z]``.

    A plain multi-page TIFF without metadata has a generic page axis (tifffile ``Q``
    or ``I``): it is read as ``Z``, the usual meaning of a page stack.
    """
    if "Z" not in axes:
        for generic in "QI":
            i = axes.find(generic)
            if i >= 0 and arr.shape[i] > 1:
                axes = axes[:i] + "Z" + axes[i + 1:]
                break
    keep = []
    for i, a in enumerate(axes):
        if a in "TCZYX" or arr.shape[i] > 1:
            keep.append(i)
    for i, a in enumerate(axes):
        if a not in "TCZYXS" and arr.shape[i] > 1:
            raise ValueError(f"unsupported axis {a!r} in {axes}")
    arr = arr.reshape([arr.shape[i] for i in keep]) if len(keep) != arr.ndim else arr
    axes = "".join(axes[i] for i in keep)
    if "S" in axes:  # RGB samples: sum to one channel
        arr = arr.sum(axis=axes.index("S"))
        axes = axes.replace("S", "")
    lead = [a for a in axes if a in "TC"]
    if len(lead) > 1:
        raise ValueError(f"both T and C axes in {axes}: split channels first")
    for a in "ZYX":
        if a not in axes:
            arr = arr[..., None]
            axes += a
    order = [axes.index(a) for a in lead] + [axes.index(a) for a in "XYZ"]
    return np.transpose(arr, order), axes
