"""``read_kspace``: one entry point for every raw k-space format.

Formats register here by name; :func:`read_kspace` picks one from the ``format``
argument or from the path. The manifest's ``mri.source.format`` uses the same names.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from dualmode.errors import InputError, check_allocation
from .bruker import read_bruker
from .ismrmrd_io import read_ismrmrd
from dualmode.kspace import KSpace, KSpaceHeader
from .twix import read_twix
from .varian import read_varian

READERS: dict[str, Callable[[str], KSpace]] = {}
#: Readers that also take ``package=`` (formats with several slice packages per scan).
PACKAGE_READERS: dict[str, Callable[..., KSpace]] = {}


def register_reader(name: str, func: Callable[[str], KSpace]) -> None:
    """Make ``func(path) -> KSpace`` available as format ``name``."""
    READERS[name] = func


def read_npz(path: str | os.PathLike) -> KSpace:
    """Read k-space saved by :func:`write_npz` (arrays ``data`` plus header fields)."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            fields = {k: z[k] for k in z.files}
    except Exception as err:
        raise InputError(path, f"not a readable .npz ({type(err).__name__}: {err})") from None
    for key in ("data", "matrix", "fov_mm"):
        if key not in fields:
            raise InputError(path, f"missing array {key!r}", key)
    data = fields.pop("data")
    check_allocation(path, "data", data.shape, data.dtype.itemsize)
    if data.ndim == 3 and "coords" not in fields:  # (coil, kx, ky) single 2D shot
        data = data[None, ..., None]
    coords = fields.pop("coords", None)
    kw = {}
    for key in ("tr_ms", "te_ms", "flip_angle_deg", "frequency_hz"):
        if key in fields:
            kw[key] = float(fields[key])
    header = KSpaceHeader(
        matrix=tuple(int(v) for v in fields["matrix"]),
        fov_mm=tuple(float(v) for v in fields["fov_mm"]),
        position_mm=tuple(float(v) for v in fields.get("position_mm", (0.0, 0.0, 0.0))),
        orientation=fields.get("orientation", np.eye(3)),
        trajectory=str(fields.get("trajectory", "cartesian" if coords is None else "noncartesian")),
        nucleus=str(fields.get("nucleus", "13C")),
        n_repetitions=int(data.shape[0]),
        n_coils=int(data.shape[1]),
        line_order=fields.get("line_order"),
        **kw,
    )
    return KSpace(data.astype(np.complex64, copy=False), header, source=path, coords=coords)


def write_npz(path: str | os.PathLike, ksp: KSpace) -> None:
    """Save :class:`KSpace` as ``.npz`` (for scripting and tests)."""
    h = ksp.header
    arrays = dict(data=ksp.data, matrix=np.asarray(h.matrix), fov_mm=np.asarray(h.fov_mm),
                  position_mm=np.asarray(h.position_mm), orientation=np.asarray(h.orientation),
                  trajectory=np.asarray(h.trajectory), nucleus=np.asarray(h.nucleus))
    for key in ("tr_ms", "te_ms", "flip_angle_deg", "frequency_hz"):
        if getattr(h, key) is not None:
            arrays[key] = np.asarray(getattr(h, key))
    if h.line_order is not None:
        arrays["line_order"] = np.asarray(h.line_order)
    if ksp.coords is not None:
        arrays["coords"] = ksp.coords
    np.savez_compressed(os.fspath(path), **arrays)


def guess_format(path: str | os.PathLike) -> str:
    """Format name from a path: extension, or the files inside a vendor folder."""
    p = os.fspath(path)
    low = p.lower()
    if low.endswith((".h5", ".mrd", ".hdf5")):
        return "ismrmrd"
    if low.endswith(".npz"):
        return "npz"
    if low.endswith(".dat"):
        return "twix"
    folder = os.path.dirname(p) or "."
    if not (os.path.basename(p) in ("fid", "acqp", "method", "procpar", "rawdata.job0") and os.path.isdir(folder)):
        folder = p  # else: a file inside a vendor folder, decided by the folder
    if os.path.isdir(folder):
        names = set(os.listdir(folder))
        if "procpar" in names and "fid" in names:
            return "varian"
        if {"acqp", "method"} <= names or "fid" in names and "acqp" in names:
            return "bruker"
    raise InputError(p, "unknown raw k-space format (expected .h5/.mrd ISMRMRD, .npz, .dat twix, "
                     "a Bruker experiment folder or a Varian .fid folder)", "format")


def read_kspace(path: str | os.PathLike, format: str | None = None, package: int | None = None) -> KSpace:
    """Read raw k-space of any supported format into :class:`KSpace`.

    Parameters
    ----------
    path : path-like
        File or vendor folder.
    format : str, optional
        One of :data:`READERS` (``"ismrmrd"``, ``"npz"``, ...); guessed from ``path`` if omitted.
    package : int, optional
        Slice package of a multi-package scan (a Bruker tripilot holds three); formats
        with a single package accept only ``None`` or 0.

    Examples
    --------
    >>> ksp = read_kspace("study/5", package=1)  # the second slice package  # doctest: +SKIP
    >>> ksp.header.affine()  # voxel -> RAS mm from the vendor geometry  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(path, "file is empty (0 bytes)")
    fmt = format or guess_format(path)
    if fmt not in READERS:
        raise InputError(path, f"unknown raw format {fmt!r}; known: {sorted(READERS)}", "format")
    if package not in (None, 0) and fmt not in PACKAGE_READERS:
        raise InputError(path, f"package {package} requested, but {fmt} data hold one package", "package")
    try:
        if fmt in PACKAGE_READERS:
            return PACKAGE_READERS[fmt](path, package=package)
        return READERS[fmt](path)
    except InputError:
        raise
    except PermissionError:
        raise InputError(path, "file is not readable (permission denied)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, RuntimeError) as err:
        # RuntimeError: h5py's report of corrupt HDF5 internals
        raise InputError(path, f"cannot read as {fmt} ({type(err).__name__}: {err})") from None


register_reader("ismrmrd", read_ismrmrd)
register_reader("npz", read_npz)
register_reader("bruker", read_bruker)
PACKAGE_READERS["bruker"] = read_bruker
register_reader("varian", read_varian)
register_reader("twix", read_twix)
