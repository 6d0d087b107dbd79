"""Acquisition folders: the ``acquisition.json`` manifest (format ``dualmode.acquisition/1``).

See ``docs/acquisition-format.md`` for every field. :func:`load_acquisition`
validates the manifest, reads the raw k-space through :func:`read_kspace`
(any registered format), applies manifest overrides to its header, and reads the
fluorescence image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from dualmode.errors import InputError
from dualmode.kspace import KSpace
from .optics import OpticalImage, read_optical
from .readers import READERS, read_kspace

FORMAT = "dualmode.acquisition/1"
MANIFEST = "acquisition.json"


@dataclass
class Acquisition:
    """Everything the pipeline needs from one acquisition folder."""

    folder: str
    name: str
    kspace: KSpace
    polarization: np.ndarray
    optics: OpticalImage | None
    placement_center_mm: np.ndarray | None
    placement_uncertainty_mm: float
    particle_diameter_um: float
    manifest: dict


def read_manifest(folder: str | os.PathLike) -> dict:
    """Load and validate ``acquisition.json``; raise :class:`InputError` naming the field."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(path):
        raise InputError(path, "manifest not found (is this an acquisition folder?)")
    try:
        with open(path, encoding="utf-8") as f:
            man = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(man, dict):
        raise InputError(path, "top level must be a JSON object")
    if man.get("format") != FORMAT:
        raise InputError(path, f"format must be {FORMAT!r}, got {man.get('format')!r}", "format")
    mri = man.get("mri")
    if not isinstance(mri, dict):
        raise InputError(path, "missing section 'mri'", "mri")
    src = mri.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("path"), str):
        raise InputError(path, "mri.source must be an object with a 'path'", "mri.source")
    fmt = src.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in READERS):
        raise InputError(path, f"unknown format {fmt!r}; known: {sorted(READERS)}", "mri.source.format")
    pol = mri.get("polarization")
    if not isinstance(pol, list) or not pol or any(p not in (1, -1) for p in pol):
        raise InputError(path, "mri.polarization must be a non-empty list of +1/-1, one per repetition",
                         "mri.polarization")
    if 1 not in pol or -1 not in pol:
        raise InputError(path, "mri.polarization needs both +1 and -1 shots for background cancellation",
                         "mri.polarization")
    geo = mri.get("geometry")
    if geo is not None:
        _check_geometry(path, geo)
    optics = man.get("optics")
    if optics is not None:
        if not isinstance(optics, dict) or not isinstance(optics.get("image"), str):
            raise InputError(path, "optics must be an object with an 'image' path", "optics.image")
        ps = optics.get("pixel_size_um")
        if ps is not None and (not isinstance(ps, list) or len(ps) not in (2, 3)
                               or any(not isinstance(v, (int, float)) or v <= 0 for v in ps)):
            raise InputError(path, "optics.pixel_size_um must be 2 or 3 positive numbers", "optics.pixel_size_um")
    return man


def _check_geometry(path: str, geo) -> None:
    if not isinstance(geo, dict):
        raise InputError(path, "mri.geometry must be an object", "mri.geometry")
    for key in ("matrix", "fov_mm"):
        val = geo.get(key)
        if not isinstance(val, list) or len(val) != 3 or any(not isinstance(v, (int, float)) for v in val):
            raise InputError(path, f"mri.geometry.{key} must be 3 numbers", f"mri.geometry.{key}")
        if any(v <= 0 for v in val):
            raise InputError(path, f"absurd geometry: {key} = {val} (must be positive)", f"mri.geometry.{key}")


def load_acquisition(folder: str | os.PathLike, optical_pixel_size_um=None) -> Acquisition:
    """Read and validate one acquisition folder.

    Parameters
    ----------
    folder : path-like
        Folder holding ``acquisition.json``.
    optical_pixel_size_um : sequence of float, optional
        Pixel size for fluorescence files that carry none.
    """
    folder = os.fspath(folder)
    man = read_manifest(folder)
    mpath = os.path.join(folder, MANIFEST)
    mri = man["mri"]
    src = mri["source"]
    ksp = read_kspace(os.path.join(folder, src["path"]), src.get("format"))
    pol = np.asarray(mri["polarization"], dtype=int)
    if pol.size != ksp.header.n_repetitions:
        raise InputError(mpath, f"lists {pol.size} polarization signs but {ksp.source} holds "
                                f"{ksp.header.n_repetitions} repetitions", "mri.polarization")
    overrides = {k: mri[k] for k in ("tr_ms", "te_ms", "flip_angle_deg", "nucleus", "frequency_hz") if k in mri}
    geo = mri.get("geometry")
    if geo:
        if [int(v) for v in geo["matrix"]] != list(ksp.header.matrix):
            raise InputError(mpath, f"geometry.matrix {geo['matrix']} does not match raw data "
                                    f"{list(ksp.header.matrix)} in {ksp.source}", "mri.geometry.matrix")
        overrides["fov_mm"] = tuple(float(v) for v in geo["fov_mm"])
        if "position_mm" in geo:
            overrides["position_mm"] = tuple(float(v) for v in geo["position_mm"])
        if "orientation" in geo:
            overrides["orientation"] = np.asarray(geo["orientation"], dtype=float)
    if overrides:
        ksp = ksp.with_header(**overrides)
    optics_sec = man.get("optics") or {}
    optics = None
    center, unc = None, 5.0
    if optics_sec:
        size = optical_pixel_size_um or optics_sec.get("pixel_size_um")
        optics = read_optical(os.path.join(folder, optics_sec["image"]), pixel_size_um=size)
        mod = optics_sec.get("modulation")
        if mod:
            frames = read_optical(os.path.join(folder, mod["frames"]), pixel_size_um=size)
            states = np.asarray(mod.get("states", []), dtype=float)
            if frames.frames is None or states.size != frames.frames.shape[0]:
                raise InputError(mpath, "optics.modulation.states must list one state per frame", "optics.modulation")
            optics.frames, optics.states = frames.frames, states
        place = optics_sec.get("placement") or {}
        if "center_mm" in place:
            center = np.asarray(place["center_mm"], dtype=float)
            if center.shape != (3,):
                raise InputError(mpath, "placement.center_mm must be 3 numbers", "optics.placement.center_mm")
        unc = float(place.get("uncertainty_mm", unc))
    return Acquisition(
        folder=folder,
        name=os.path.basename(os.path.normpath(folder)),
        kspace=ksp,
        polarization=pol,
        optics=optics,
        placement_center_mm=center,
        placement_uncertainty_mm=unc,
        particle_diameter_um=float(optics_sec.get("particle_diameter_um", 200.0)),
        manifest=man,
    )
