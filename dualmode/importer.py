"""``dualmode import``: a scanner experiment plus a microscope image -> an acquisition folder.

A user arrives with a vendor experiment (Bruker folder, Varian ``.fid``, Siemens twix,
ISMRMRD) and a fluorescence image, not with an ``acquisition.json``.
:func:`import_acquisition` reads both (so a bad file is refused before anything is
written), writes a manifest that references them by relative path (or copies them with
``copy=True``) and fills it from the vendor header, and validates the result with
:func:`dualmode.io.load_acquisition`. The folder appears whole or not at all
(:func:`dualmode.atomic.atomic_path`). Geometry is not copied into the manifest: the raw
data carry it (``mri.geometry`` is only needed, and then demanded, when they do not).

:func:`value_sources` tells, for every header value of a loaded acquisition, where it came
from (manifest field or vendor parameter); ``dualmode info`` prints it.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from dualmode.atomic import atomic_path
from dualmode.errors import InputError

HEADER_FIELDS = ("tr_ms", "te_ms", "flip_angle_deg", "nucleus", "frequency_hz")


def parse_polarization(text: str | None, scheme: str | None, n_repetitions: int) -> list[int]:
    """Signs per repetition from ``"+-+-"`` (one per repetition) or a ``scheme`` repeated to fill.

    Examples
    --------
    >>> parse_polarization(None, "+-", 4)
    [1, -1, 1, -1]
    """
    if (text is None) == (scheme is None):
        raise ValueError("give exactly one of --polarization (one sign per repetition) or --scheme")
    pattern = text if text is not None else scheme
    if not pattern or set(pattern) - {"+", "-"}:
        raise ValueError(f"polarization {pattern!r} must be a string of + and - characters")
    signs = [1 if c == "+" else -1 for c in pattern]
    if scheme is not None:
        signs = (signs * (n_repetitions // len(signs) + 1))[:n_repetitions]
    if len(signs) != n_repetitions:
        raise ValueError(f"{len(signs)} polarization signs for {n_repetitions} repetitions in the raw data")
    return signs


def import_acquisition(scanner: str | os.PathLike, optical: str | os.PathLike, dest: str | os.PathLike, *,
                       polarization: str | None = None, scheme: str | None = None, copy: bool = False,
                       package: int | None = None, raw_format: str | None = None, pixel_size_um=None,
                       hyperpolarized: bool = True) -> dict:
    """Write the acquisition folder ``dest`` for a scanner experiment and a microscope image.

    Parameters
    ----------
    scanner : path-like
        Raw k-space: Bruker experiment folder, Varian ``.fid`` folder, twix ``.dat``, ISMRMRD.
    optical : path-like
        Fluorescence TIFF/OME-TIFF.
    dest : path-like
        New acquisition folder (must not exist).
    polarization, scheme : str
        ``"+-+-"`` one sign per repetition, or a pattern (``"+-"``) repeated over them.
    copy : bool
        Copy the raw data and the image into ``dest`` instead of referencing them.
    package : int, optional
        Slice package of a multi-package scan.
    pixel_size_um : sequence of float, optional
        Optical pixel size when the image carries none.
    hyperpolarized : bool
        ``False`` for thermal data (no RF-depletion model).

    Returns
    -------
    dict
        The manifest written.

    Examples
    --------
    >>> import_acquisition("study/7", "particles.ome.tif", "acq1", scheme="+-")  # doctest: +SKIP
    """
    from dualmode.io import load_acquisition, read_kspace
    from dualmode.io.optics import read_optical

    dest = os.path.abspath(os.fspath(dest))
    if os.path.exists(dest):
        raise InputError(dest, "destination exists; choose a new folder", "DEST")
    ksp = read_kspace(scanner, raw_format, package)
    h = ksp.header
    if ksp.header.trajectory == "spectroscopic":
        raise InputError(os.fspath(scanner), "a spectroscopic scan (FIDs) is not an image", "trajectory")
    read_optical(optical, pixel_size_um=pixel_size_um)
    try:
        signs = parse_polarization(polarization, scheme, h.n_repetitions)
    except ValueError as err:
        raise InputError(os.fspath(scanner), str(err), "--polarization") from None
    with atomic_path(dest) as tmp:
        os.makedirs(tmp)
        raw_rel = _place(scanner, tmp, dest, copy, "mri")
        img_rel = _place(optical, tmp, dest, copy, "optics")
        man = _manifest(raw_rel, img_rel, ksp, signs, package, raw_format, pixel_size_um, hyperpolarized)
        with open(os.path.join(tmp, "acquisition.json"), "w", encoding="utf-8") as f:
            json.dump(man, f, indent=2)
        load_acquisition(tmp)  # validate before the folder appears
    return man


def _place(src, tmp: str, dest: str, copy: bool, sub: str) -> str:
    """Path of ``src`` relative to ``dest`` (copied under ``dest/sub/`` when ``copy``)."""
    src = os.path.abspath(os.fspath(src))
    if not copy:
        return os.path.relpath(src, dest)
    os.makedirs(os.path.join(tmp, sub), exist_ok=True)
    target = os.path.join(tmp, sub, os.path.basename(src.rstrip(os.sep)))
    (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, target)
    return os.path.join(sub, os.path.basename(target))


def _manifest(raw_rel, img_rel, ksp, signs, package, raw_format, pixel_size_um, hyperpolarized) -> dict:
    h = ksp.header
    source = {"path": raw_rel}
    if raw_format:
        source["format"] = raw_format
    if package is not None:
        source["package"] = int(package)
    mri = {"source": source, "polarization": signs, "hyperpolarized": bool(hyperpolarized),
           "scheme": "".join("+" if s > 0 else "-" for s in signs)}
    mri.update({k: getattr(h, k) for k in HEADER_FIELDS if getattr(h, k) is not None})
    mri["x-imported"] = {"geometry_source": h.extra.get("geometry_source", "raw header"),
                         "sources": h.extra.get("sources", {}), "matrix": list(h.matrix),
                         "fov_mm": list(h.fov_mm), "position_mm": list(h.position_mm),
                         "orientation": np.asarray(h.orientation).tolist()}
    optics = {"image": img_rel}
    if pixel_size_um is not None:
        optics["pixel_size_um"] = [float(v) for v in pixel_size_um]
    return {"format": "dualmode.acquisition/1", "mri": mri, "optics": optics}


def value_sources(acq) -> dict:
    """Where each MRI header value of a loaded acquisition came from."""
    h = acq.kspace.header
    mri = (acq.manifest or {}).get("mri", {})
    vendor = h.extra.get("sources", {})
    out = {}
    for key in ("matrix", "fov_mm", "position_mm", "orientation", *HEADER_FIELDS, "n_repetitions"):
        if key in mri:
            out[key] = f"manifest mri.{key}"
        elif key in ("fov_mm", "position_mm", "orientation") and "geometry" in mri:
            out[key] = f"manifest mri.geometry.{key}" if key in mri["geometry"] or key == "fov_mm" else \
                vendor.get(key, "raw header")
        else:
            out[key] = vendor.get(key, f"raw header ({os.path.basename(acq.kspace.source)})")
    out["geometry"] = h.extra.get("geometry_source", "raw header")
    if "visu_pars_check" in h.extra or "visu_pars_mismatch_mm" in h.extra:
        out["visu_pars"] = h.extra.get("visu_pars_check", h.extra.get("geometry_warning"))
    out["hyperpolarized"] = "manifest mri.hyperpolarized" if "hyperpolarized" in mri else "default (true)"
    return out


def describe_packages(path: str | os.PathLike) -> list[dict] | None:
    """Slice packages of a Bruker experiment (orientation as RAS axes, slices, position), else ``None``."""
    from dualmode.io.bruker import bruker_packages, read_bruker_params
    from dualmode.io.readers import guess_format

    path = os.fspath(path)
    try:
        if guess_format(path) != "bruker":
            return None
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        acqp, method = read_bruker_params(folder)
        pkgs = bruker_packages(acqp, method, folder)
    except InputError:
        return None
    return [{"package": i, "slices": len(p["objects"]), "slice_spacing_mm": p["spacing_mm"],
             "position_mm": list(p["position_mm"]), "normal_ras": np.round(p["orientation"][:, 2], 4).tolist()}
            for i, p in enumerate(pkgs)]
