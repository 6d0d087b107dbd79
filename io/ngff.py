"""OME-Zarr (OME-NGFF) output of the co-registered pair, each modality at its native resolution.

Layout of ``path``: an OME-Zarr 0.5 container in the ``bioformats2raw.layout`` form
(NGFF's way to hold several images, read by Bio-Formats, napari-ome-zarr, ome-zarr-py
and validated by ome-zarr-models)::

    path/zarr.json  {"ome": {"version": "0.5", "bioformats2raw.layout": 3},
                     "dualmode": {...}}  frame, MRI affine, optical_to_mri, grids
    path/0          image "mri": multiscale, axes (z, y, x), 13C |H| on the MRI grid
    path/1          image "optical": multiscale, axes (z, y, x), fluorescence resampled
                    once onto a grid with the MRI axes at the optical pixel size,
                    covering the optical field
    path/OME        {"ome": {"series": ["0", "1"]}} and METADATA.ome.xml (image names,
                    sizes, physical sizes, channel names and colours; napari-ome-zarr
                    and Bio-Formats list the series from it)

Each image has an ``omero`` block (channel label, colour, display window) so viewers
open it with the colours and contrast of ``qc.png``.

NGFF coordinate transformations are only scale + translation (no rotation), so
both images are written in one common physical frame, in millimetres:

* ``frame = "RAS"`` when the MRI affine is diagonal with positive voxel sizes:
  NGFF x, y, z are RAS world mm;
* ``frame = "mri_grid"`` otherwise: mm along the MRI array axes from the centre of
  MRI voxel 0 (``world = mri_affine @ diag(1/voxel) @ p``; the full affines are in
  the ``dualmode`` attributes).

The optical image therefore carries the registration: the caller resamples it
onto a grid with the MRI axes at its native pixel size
(:func:`dualmode.registration.fusion.optical_native_grid`), kept as the NGFF scale. Arrays are ``[x, y, z]`` in memory and are
transposed to NGFF ``(z, y, x)`` here. Pyramid levels halve x and y (block mean;
translation shifted to the block centre), z is kept.

The store is written by zarr alone, in one coroutine (every group and array at once),
Blosc LZ4 compressed: no Dask graph and no ome-zarr-py import for a few MB.
"""

from __future__ import annotations

import json
import os

import numpy as np

from dualmode.atomic import atomic_path
from dualmode.conventions import voxel_sizes

AXES = [
    {"name": "z", "type": "space", "unit": "millimeter"},
    {"name": "y", "type": "space", "unit": "millimeter"},
    {"name": "x", "type": "space", "unit": "millimeter"},
]


def _halve_xy(arr: np.ndarray) -> np.ndarray:
    """Mean of 2 x 2 blocks in x, y of a float32 ``[x, y, z]`` array (odd last row/column dropped).

    Four strided views added in float32 and divided by 4, in the order NumPy's ``mean``
    over a blocked view adds them for this memory layout (pairwise along the contiguous
    axis), so the values are those of ``skimage.transform.downscale_local_mean(arr, (2, 2, 1))``
    cropped to whole blocks (bit for bit with NumPy 2), without its padded copy and blocked view.
    """
    nx, ny = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    a = arr[:nx, :ny]
    a00, a01, a10, a11 = a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2]
    if arr.strides[0] < arr.strides[1]:  # x varies fastest (a transposed ITK or Fortran array)
        out = a00 + a10
        out += a01 + a11
    elif arr.shape[2] == 1:
        out = a00 + a01
        out += a10 + a11
    else:
        out = a00 + a01
        out += a10
        out += a11
    out /= np.float32(4.0)
    return out


def _pyramid(arr_xyz, spacing_mm, first_mm, levels):
    """Block-mean pyramid in x, y with NGFF (z, y, x) scale/translation per level.

    Each level is the 2 x 2 block mean of the previous one (:func:`_halve_xy`), in one pass.
    """
    out, transforms = [], []
    arr = np.asarray(arr_xyz, np.float32)
    sp = np.asarray(spacing_mm, float)
    first = np.asarray(first_mm, float)
    for level in range(levels):
        if level:
            if min(arr.shape[:2]) < 2:
                break
            first = first + np.array([0.5, 0.5, 0.0]) * sp
            sp = sp * np.array([2.0, 2.0, 1.0])
            arr = _halve_xy(arr)
        out.append(np.ascontiguousarray(np.transpose(arr)))
        transforms.append([{"type": "scale", "scale": [float(v) for v in sp[::-1]]},
                           {"type": "translation", "translation": [float(v) for v in first[::-1]]}])
    return out, transforms


def _omero(arr: np.ndarray, label: str, color: str, window) -> dict:
    """The ``omero`` rendering block of a one-channel image (NGFF transitional metadata)."""
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN or inf somewhere: range of the finite values
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    start, end = window if window is not None else (lo, hi)
    return {"channels": [{"label": label, "color": color.lstrip("#").upper(), "active": True,
                          "window": {"min": lo, "max": hi, "start": float(start), "end": float(end)}}],
            "rdefs": {"model": "color", "defaultZ": 0, "defaultT": 0}}


def _chunk_length(n: int, cap: int) -> int:
    """Chunk length along an axis of ``n`` samples: at most ``cap``, dividing ``n`` when a split into
    up to twice the fewest parts allows it (21 -> 7, so no partial chunk), else the fewest equal parts."""
    fewest = -(-n // cap)
    exact = [n // k for k in range(fewest, 2 * fewest + 1) if n % k == 0]
    return exact[0] if exact else -(-n // fewest)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk shape of a ``(z, y, x)`` level: at most 16 planes of 512 x 512, split evenly.

    Each axis is cut into equal parts within the limit that divide it where possible
    (:func:`_chunk_length`), so chunks are whole: zarr encodes a whole chunk as it is, while a
    partial one is first copied into a padded buffer (and the padding compressed for nothing).
    """
    return tuple(_chunk_length(n, cap) if n else 1 for n, cap in zip(shape, (16, 512, 512)))


def _blocks(shape: tuple[int, ...], chunks: tuple[int, ...]):
    """The chunk-aligned blocks of an array (tuples of slices), in C order of the chunk grid."""
    grid = [range(0, n, c) for n, c in zip(shape, chunks)]
    for start in np.ndindex(*(len(g) for g in grid)):
        yield tuple(slice(g[i], min(g[i] + c, n)) for g, i, c, n in zip(grid, start, chunks, shape))


#: Blosc LZ4 with byte shuffle: several times faster than zarr's default zstd for float32
#: images and smaller files; every NGFF reader (zarr-python, napari-ome-zarr, ome-zarr-py,
#: ome-zarr-models) decodes it (ome-zarr-py writes Blosc itself).
_CODEC = {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle",
                                             "typesize": 4, "blocksize": 0}}


def _image(name: str, arr, spacing, first, levels: int, channel) -> tuple[list, dict, tuple]:
    """Pyramid levels, group attributes (NGFF 0.5 ``multiscales`` + ``omero``) and OME-XML facts of one image."""
    pyr, transforms = _pyramid(arr, spacing, first, levels)
    datasets = [{"path": f"s{level}", "coordinateTransformations": t} for level, t in enumerate(transforms)]
    omero = _omero(arr, *(channel or (name, "FFFFFF", None)))
    attrs = {"ome": {"version": "0.5", "multiscales": [{"datasets": datasets, "name": name, "axes": AXES}],
                     "omero": omero}}
    return pyr, attrs, (name, arr, spacing, omero["channels"][0])


async def _write_group(root, key: str, attrs: dict, levels: list[np.ndarray]) -> None:
    """Group ``key`` of ``root`` with ``attrs`` and arrays ``s0, s1, ...`` (written concurrently)."""
    import asyncio

    group = await root.create_group(key, attributes=attrs)

    async def level(i: int, data: np.ndarray) -> None:
        chunks = _chunks(data.shape)
        array = await group.create_array(f"s{i}", shape=data.shape, dtype=data.dtype, chunks=chunks,
                                         compressors=[_CODEC], dimension_names=[a["name"] for a in AXES],
                                         fill_value=0.0, config={"write_empty_chunks": True})
        # one write per chunk: zarr encodes a whole chunk given alone as it is, where a write of
        # the whole array would copy each chunk into a new fill-valued buffer first
        await asyncio.gather(*(array.setitem(block, data[block]) for block in _blocks(data.shape, chunks)))

    await asyncio.gather(*(level(i, data) for i, data in enumerate(levels)))


async def _write_store(store, root_attrs: dict, groups: list[tuple[str, dict, list]]) -> None:
    """The whole store in one coroutine: zarr creates every group and array concurrently, and the
    caller pays one hand-over to zarr's event loop instead of one per group, array and write."""
    import asyncio

    import zarr.api.asynchronous as za

    root = await za.open_group(store=store, mode="w", zarr_format=3, attributes=root_attrs)
    await asyncio.gather(*(_write_group(root, key, attrs, levels) for key, attrs, levels in groups))


#: stores whose arrays take at most this many bytes are encoded in memory, then written out
_IN_MEMORY_BYTES = 256 * 2**20


def _save_store(folder: str, root_attrs: dict, groups: list[tuple[str, dict, list]]) -> None:
    """Write the store into the new ``folder``.

    Up to :data:`_IN_MEMORY_BYTES` zarr encodes every document and chunk into a
    ``MemoryStore`` and the files are then written here in one pass (each key is a
    relative path: exactly the layout zarr's ``LocalStore`` makes, without its temporary
    file, rename and worker thread per key; ``folder`` is swapped in whole by the caller).
    Larger stores go to the ``LocalStore`` directly, a chunk at a time.
    """
    from zarr.core.sync import sync  # runs a coroutine on zarr's event loop (zarr's own sync API does)
    from zarr.storage import MemoryStore

    if sum(level.nbytes for _, _, levels in groups for level in levels) > _IN_MEMORY_BYTES:
        sync(_write_store(folder, root_attrs, groups))
        return
    encoded: dict = {}
    sync(_write_store(MemoryStore(encoded), root_attrs, groups))
    made = set()
    for key, buffer in encoded.items():
        path = os.path.join(folder, *key.split("/"))
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb") as f:
            f.write(buffer.as_numpy_array().data)


def _ome_xml(images: list[tuple[str, np.ndarray, np.ndarray, dict]]) -> str:
    """``OME/METADATA.ome.xml``: one ``Image:<i>`` per series (name, size, mm pixel size, channel)."""
    import xml.etree.ElementTree as ET

    ns = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
    root = ET.Element("OME", {"xmlns": ns, "Creator": "dualmode"})
    for i, (name, arr, spacing_mm, channel) in enumerate(images):
        image = ET.SubElement(root, "Image", {"ID": f"Image:{i}", "Name": name})
        sizes = {f"Size{a}": str(n) for a, n in zip("XYZ", arr.shape)}
        physical = {}
        for a, sp in zip("XYZ", spacing_mm):
            physical.update({f"PhysicalSize{a}": repr(float(sp)), f"PhysicalSize{a}Unit": "mm"})
        pixels = ET.SubElement(image, "Pixels", {"ID": f"Pixels:{i}", "DimensionOrder": "XYZCT", "Type": "float",
                                                 **sizes, "SizeC": "1", "SizeT": "1", **physical})
        rgba = (int(channel["color"], 16) << 8) | 0xFF
        ET.SubElement(pixels, "Channel", {"ID": f"Channel:{i}:0", "Name": channel["label"], "SamplesPerPixel": "1",
                                          "Color": str(rgba - (1 << 32) if rgba >= 1 << 31 else rgba)})
        ET.SubElement(pixels, "MetadataOnly")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def write_ome_zarr(
    path: str | os.PathLike,
    mri_image: np.ndarray,
    mri_affine: np.ndarray,
    optical_image: np.ndarray,
    optical_affine: np.ndarray,
    *,
    attrs: dict | None = None,
    levels: int = 3,
    channels: dict | None = None,
) -> dict:
    """Write the MRI and the registered optical image, each on its own grid, as OME-Zarr.

    Both grids must share the MRI axes (the optical grid of
    :func:`dualmode.registration.fusion.optical_native_grid`); this function only writes.

    Parameters
    ----------
    path : path-like
        Output folder (``.ome.zarr``); written beside and swapped in whole
        (:func:`dualmode.atomic.atomic_path`), the previous store stays until then.
    mri_image : (I, J, K) ndarray
        13C magnitude ``[x, y, z]``.
    mri_affine : (4, 4) ndarray
        MRI voxel -> RAS mm.
    optical_image : (X, Y, Z) ndarray
        Fluorescence ``[x, y, z]`` already resampled onto ``optical_affine``.
    optical_affine : (4, 4) ndarray
        Optical grid voxel -> RAS mm, with the axes of ``mri_affine``.
    attrs : dict, optional
        Extra entries of the ``dualmode`` attributes (e.g. ``optical_to_mri``).
    levels : int
        Pyramid levels per image (x, y halved per level).
    channels : dict, optional
        ``{"mri": (label, "RRGGBB", (start, end)), "optical": (...)}``: the ``omero`` channel
        of each image (default: gray, window = data range).

    Returns
    -------
    dict
        The ``dualmode`` attributes written (frame, affines).
    """
    mri = np.asarray(mri_image, np.float32)
    aff = np.asarray(mri_affine, float)
    opt = np.asarray(optical_image, np.float32)
    opt_aff = np.asarray(optical_affine, float)
    if mri.ndim != 3 or opt.ndim != 3:
        raise ValueError(f"need [x, y, z] arrays, got {mri.shape} and {opt.shape}")
    vox, opt_vox = voxel_sizes(aff), voxel_sizes(opt_aff)
    lin = aff[:3, :3]
    if not np.allclose(opt_aff[:3, :3] / opt_vox, lin / vox, atol=1e-9):
        raise ValueError("the optical grid must have the axes of the MRI grid")
    ras = bool(np.allclose(lin, np.diag(np.diag(lin)), atol=1e-9 * vox.max()) and np.all(np.diag(lin) > 0))
    # common frame: grid frame p (mm along MRI axes from voxel 0); RAS adds the origin
    offset = aff[:3, 3] if ras else np.zeros(3)
    opt_first = (opt_aff[:3, 3] - aff[:3, 3]) @ np.linalg.inv(lin).T * vox + offset
    meta = {
        "frame": "RAS" if ras else "mri_grid",
        "units": "millimeter",
        "mri_affine": aff.tolist(),
        "optical_grid_affine": opt_aff.tolist(),
        "axis_order_on_disk": "zyx (arrays are [x, y, z] in dualmode)",
        **(attrs or {}),
    }
    images = [_image(name, arr, sp, first, levels, (channels or {}).get(name))
              for name, arr, sp, first in (("mri", mri, vox, offset), ("optical", opt, opt_vox, opt_first))]
    groups = [(str(index), attrs, pyr) for index, (pyr, attrs, _) in enumerate(images)]
    groups.append(("OME", {"ome": {"version": "0.5", "series": ["0", "1"]}}, []))
    root_attrs = {"ome": {"version": "0.5", "bioformats2raw.layout": 3}, "dualmode": json.loads(json.dumps(meta))}
    with atomic_path(path) as tmp:
        _save_store(tmp, root_attrs, groups)
        with open(os.path.join(tmp, "OME", "METADATA.ome.xml"), "w", encoding="utf-8") as f:
            f.write(_ome_xml([facts for _, _, facts in images]))
    return meta
