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
from .readers import read_kspace
from .schema import FORMAT, MANIFEST, Manifest, Placement, validate_manifest  # noqa: F401 (FORMAT re-exported)

@dataclass(repr=False)
class Acquisition:
    """Everything the pipeline needs from one acquisition folder.

    ``placement_orientation`` (3x3, columns = optical axes in MRI RAS) and
    ``placement_orientation_uncertainty_deg`` are ``None`` unless the manifest gives them;
    ``sampling`` is the absolute path of the sampling plan (``mri.sampling``) or ``None``;
    ``hyperpolarized`` is ``mri.hyperpolarized`` (default true); ``schema`` the validated
    :class:`~dualmode.io.schema.Manifest`, ``manifest`` the raw JSON.
    """

    folder: str
    name: str
    kspace: KSpace
    polarization: np.ndarray
    optics: OpticalImage | None
    placement_center_mm: np.ndarray | None
    placement_uncertainty_mm: float
    particle_diameter_um: float
    manifest: dict
    hyperpolarized: bool = True
    sampling: str | None = None
    placement_orientation: np.ndarray | None = None
    placement_orientation_uncertainty_deg: float | None = None
    schema: Manifest | None = None

    def __repr__(self) -> str:
        h = self.kspace.header
        return (f"Acquisition({self.name!r}, matrix={list(h.matrix)}, repetitions={h.n_repetitions}, "
                f"optics={'none' if self.optics is None else list(self.optics.data.shape)})")


def read_manifest(folder: str | os.PathLike) -> dict:
    """Load and validate ``acquisition.json`` (:mod:`dualmode.io.schema`); return the JSON content.

    Raises
    ------
    InputError
        ``FOLDER/acquisition.json [field.path]: problem``.
    """
    return parse_manifest(folder)[0]


def parse_manifest(folder: str | os.PathLike) -> tuple[dict, Manifest]:
    """The JSON content of ``acquisition.json`` and its validated :class:`Manifest`."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isdir(os.fspath(folder)):
        raise InputError(folder, "not a folder (an acquisition folder holds acquisition.json)")
    if not os.path.isfile(path):
        raise InputError(path, "manifest not found (is this an acquisition folder?)")
    try:
        with open(path, encoding="utf-8-sig") as f:  # a UTF-8 BOM (Windows editors) is accepted
            man = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply; not an acquisition manifest") from None
    return man, validate_manifest(man, path)


def load_acquisition(folder: str | os.PathLike, optical_pixel_size_um=None, threads: int = 1) -> Acquisition:
    """Read and validate one acquisition folder.

    Parameters
    ----------
    folder : path-like
        Folder holding ``acquisition.json`` (``docs/acquisition-format.md``).
    optical_pixel_size_um : sequence of float, optional
        Pixel size for fluorescence files that carry none.
    threads : int
        Threads decoding compressed optical images (:func:`dualmode.io.read_optical`).

    Returns
    -------
    Acquisition

    Raises
    ------
    InputError
        Bad manifest, raw data or image: names the file and the field.

    Examples
    --------
    >>> acq = load_acquisition("my-acq")          # doctest: +SKIP
    >>> acq.polarization, acq.hyperpolarized      # doctest: +SKIP
    (array([ 1, -1,  1, -1]), True)
    """
    folder = os.fspath(folder)
    raw, man = parse_manifest(folder)
    mpath = os.path.join(folder, MANIFEST)
    mri = man.mri
    ksp = read_kspace(_existing(folder, mri.source.path, mpath, "mri.source.path"), mri.source.format,
                      mri.source.package)
    pol = np.asarray(mri.polarization, dtype=int)
    if pol.size != ksp.header.n_repetitions:
        raise InputError(mpath, f"lists {pol.size} polarization signs but {ksp.source} holds "
                                f"{ksp.header.n_repetitions} repetitions", "mri.polarization")
    ksp = _apply_overrides(ksp, mri, mpath)
    _check_header(ksp, mri, mpath)
    sec = man.optics
    optics = None if sec is None else _read_optics(folder, sec, optical_pixel_size_um, mpath, threads)
    place = (sec.placement if sec is not None else None) or Placement()
    return Acquisition(
        folder=folder,
        name=os.path.basename(os.path.normpath(folder)),
        kspace=ksp,
        polarization=pol,
        optics=optics,
        placement_center_mm=None if place.center_mm is None else np.asarray(place.center_mm, dtype=float),
        placement_uncertainty_mm=place.uncertainty_mm,
        particle_diameter_um=200.0 if sec is None else sec.particle_diameter_um,
        manifest=raw,
        hyperpolarized=mri.hyperpolarized,
        sampling=None if mri.sampling is None else _existing(folder, mri.sampling, mpath, "mri.sampling"),
        placement_orientation=None if place.orientation is None else np.asarray(place.orientation, dtype=float),
        placement_orientation_uncertainty_deg=place.orientation_uncertainty_deg,
        schema=man,
    )


def _existing(folder: str, rel: str, mpath: str, field: str) -> str:
    """``folder/rel``, or an error naming the manifest field that points at nothing."""
    path = os.path.join(folder, rel)
    if not os.path.exists(path):
        raise InputError(mpath, f"{rel!r} not found in {folder}", field)
    return path


def _apply_overrides(ksp: KSpace, mri, mpath: str) -> KSpace:
    """The raw header with the manifest's MRI fields (they win over the raw header)."""
    overrides = {k: getattr(mri, k) for k in ("tr_ms", "te_ms", "flip_angle_deg", "nucleus", "frequency_hz")
                 if getattr(mri, k) is not None}
    geo = mri.geometry
    vendor = str(ksp.header.extra.get("geometry_source", ""))
    if geo is None and (vendor.startswith("none") or "DISAGREES" in vendor) and ksp.header.trajectory != "spectroscopic":
        raise InputError(mpath, f"the raw data give no trustworthy geometry ({vendor}): add mri.geometry",
                         "mri.geometry")
    if geo is not None:
        if list(geo.matrix) != list(ksp.header.matrix):
            raise InputError(mpath, f"{geo.matrix} does not match the raw data's matrix "
                                    f"{list(ksp.header.matrix)} in {ksp.source}", "mri.geometry.matrix")
        overrides["fov_mm"] = tuple(geo.fov_mm)
        if geo.position_mm is not None:
            overrides["position_mm"] = tuple(geo.position_mm)
        if geo.orientation is not None:
            overrides["orientation"] = np.asarray(geo.orientation, dtype=float)
    return ksp.with_header(**overrides) if overrides else ksp


def _check_header(ksp: KSpace, mri, mpath: str) -> None:
    """Values of the merged header the models cannot use (raw header values included)."""
    flip = ksp.header.flip_angle_deg
    if mri.hyperpolarized and flip is not None and not 0 < flip < 90:
        raise InputError(ksp.source, f"flip angle {flip:g} deg: hyperpolarized data need 0 < flip < 90 "
                                     f"(or set mri.flip_angle_deg / mri.hyperpolarized in {mpath})",
                         "flip_angle_deg")
    data = ksp.data
    if not np.any(data):
        raise InputError(ksp.source, "every k-space sample is zero: no signal was recorded", "data")
    flat = data.reshape(data.shape[0], -1)
    for rep, shot in enumerate(flat):
        if not np.any(shot):
            raise InputError(ksp.source, f"repetition {rep} holds only zeros (a dropped shot?)", "data")
        if shot.size > 1 and np.all(shot == shot[0]):
            raise InputError(ksp.source, f"repetition {rep}: every k-space sample has the same value "
                                         f"{shot[0]:.3g} (not an acquisition)", "data")


def _read_optics(folder: str, sec, pixel_size_um, mpath: str, threads: int = 1) -> OpticalImage:
    """The fluorescence image (and modulated frames) named in the ``optics`` section."""
    size = pixel_size_um or sec.pixel_size_um
    optics = read_optical(_existing(folder, sec.image, mpath, "optics.image"), pixel_size_um=size, threads=threads)
    _check_image(optics)
    if sec.modulation is not None:
        frames = read_optical(_existing(folder, sec.modulation.frames, mpath, "optics.modulation.frames"),
                              pixel_size_um=size, threads=threads)
        states = np.asarray(sec.modulation.states, dtype=float)
        if frames.frames is None or states.size != frames.frames.shape[0]:
            n = 1 if frames.frames is None else frames.frames.shape[0]
            raise InputError(mpath, f"lists {states.size} states but {frames.source} holds {n} frames",
                             "optics.modulation.states")
        optics.frames, optics.states = frames.frames, states
    return optics


MIN_OPTICAL_PIXELS = 8


def _check_image(optics: OpticalImage) -> None:
    shape = optics.data.shape
    if min(shape[:2]) < MIN_OPTICAL_PIXELS:
        raise InputError(optics.source, f"image is {shape[0]}x{shape[1]} pixels; particle detection needs at "
                                        f"least {MIN_OPTICAL_PIXELS}x{MIN_OPTICAL_PIXELS}", "shape")
    if not np.any(optics.data != optics.data.flat[0]):
        raise InputError(optics.source, f"every pixel has the same value {optics.data.flat[0]:.3g}: "
                                        "no fluorescence recorded", "data")
