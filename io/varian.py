"""Varian/Agilent VnmrJ ``.fid`` folders (binary ``fid`` + text ``procpar``).

The ``fid`` file is a 32-byte big-endian file header (``nblocks, ntraces, np,
ebytes, tbytes, bbytes, vers_id, status, nbheaders``) followed by ``nblocks``
blocks of ``nbheaders`` 28-byte block headers and ``ntraces`` traces of ``np``
interleaved re/im values (int16, int32 or float32; Agilent "VnmrJ User
Programming" manual, ch. "Data file structures"). ``nmrglue.varian`` reads both
files; this module checks sizes first, then maps the traces to :class:`KSpace`:

* spectroscopy (``nv`` absent or 0): every trace is one FID = one repetition,
  ``matrix = (np/2, 1, 1)``, ``trajectory = "spectroscopic"``; geometry is a
  1 mm placeholder and ``extra`` holds ``sw_hz``/``dwell_s``;
* Cartesian imaging (compressed phase loop, single slice, no phase table):
  traces ordered ``[repetition][nv2][nv]``, ``matrix = (np/2, nv, nv2 or 1)``,
  FOV from ``lro``/``lpe``/``lpe2`` (cm) and ``thk`` (mm).

Header: ``sfrq`` (MHz) -> frequency, ``tn`` -> nucleus, ``tr``/``te`` (s) -> ms,
``flip1`` (deg).

Geometry (:func:`procpar_geometry`): the Euler angles ``psi``, ``phi``, ``theta`` (deg)
give the read, phase and slice directions in the magnet frame by the rotation VnmrJ
writes into its ``fdf`` image headers (``orientation``, rows = read, phase, slice);
the FOV centre sits at ``pro``, ``ppe`` (cm) along read and phase and ``pss`` (cm,
``ppe2`` for 3D) along the slice direction. The magnet frame is taken as the patient's
LPS for a head-first supine subject (as DICOM and ParaVision; ``diag(-1, -1, 1)`` to
RAS). Checked by a round trip through :func:`dualmode.simulate.write_varian`; no public
Varian imaging data with a vendor reconstruction was available to check it against.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from dualmode.errors import InputError, check_allocation
from dualmode.kspace import KSpace, KSpaceHeader

_FILEHEADER = struct.Struct(">6ihhi")
_BLOCKHEADER_BYTES = 28


def read_procpar(path: str | os.PathLike) -> dict:
    """Procpar as ``{name: value}`` (numbers as float, a list when arrayed, strings as str)."""
    import nmrglue.fileio.varian as ngv

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "procpar not found" if not os.path.exists(path) else "procpar is a directory")
    if os.path.getsize(path) > 64 * 1024**2:
        raise InputError(path, "procpar larger than 64 MB, refusing")
    try:
        raw = ngv.read_procpar(path)
    except Exception as err:  # nmrglue raises IndexError/ValueError/... on malformed text
        raise InputError(path, f"malformed procpar ({type(err).__name__}: {err})") from None
    if not raw:
        raise InputError(path, "procpar holds no parameters")
    out = {}
    for name, rec in raw.items():
        vals = list(rec.get("values", []))
        if str(rec.get("basictype")) == "1":  # real
            try:
                vals = [float(v) for v in vals]
            except ValueError:
                raise InputError(path, f"real parameter has non-numeric value {vals[:3]}", name) from None
        out[name] = vals[0] if len(vals) == 1 else vals
    return out


def _num(pp: dict, key: str, path: str, default=None) -> float | None:
    val = pp.get(key, default)
    if isinstance(val, list):
        val = val[0] if val else default
    if val is None:
        return None
    try:
        out = float(val)
    except (TypeError, ValueError):
        raise InputError(path, f"{key} = {val!r} is not a number", key) from None
    if not np.isfinite(out):
        raise InputError(path, f"{key} = {val!r} is not finite", key)
    return out


def fid_fileheader(path: str) -> dict:
    """The 32-byte ``fid`` file header, with the file size checked against it."""
    size = os.path.getsize(path)
    if size < _FILEHEADER.size:
        raise InputError(path, f"file is {size} bytes, shorter than the 32-byte fid header", "fileheader")
    with open(path, "rb") as f:
        vals = _FILEHEADER.unpack(f.read(_FILEHEADER.size))
    keys = ("nblocks", "ntraces", "np", "ebytes", "tbytes", "bbytes", "vers_id", "status", "nbheaders")
    hdr = dict(zip(keys, vals))
    if hdr["ebytes"] not in (2, 4) or hdr["nblocks"] < 1 or hdr["ntraces"] < 1 or hdr["np"] < 2 or hdr["np"] % 2:
        raise InputError(path, f"invalid fid header {hdr}", "fileheader")
    if hdr["tbytes"] != hdr["np"] * hdr["ebytes"] or hdr["nbheaders"] < 0 or \
            hdr["bbytes"] != hdr["ntraces"] * hdr["tbytes"] + hdr["nbheaders"] * _BLOCKHEADER_BYTES:
        raise InputError(path, f"inconsistent fid header sizes {hdr}", "fileheader")
    check_allocation(path, "fileheader", (hdr["nblocks"], hdr["ntraces"], hdr["np"] // 2), 8)
    expect = _FILEHEADER.size + hdr["nblocks"] * hdr["bbytes"]
    if size < expect:
        raise InputError(path, f"file is truncated: {size} bytes, header declares {expect}", "nblocks")
    return hdr


def read_varian(path: str | os.PathLike) -> KSpace:
    """Read a Varian/Agilent ``.fid`` folder into :class:`KSpace` (see module docstring).

    Raises
    ------
    InputError
        Missing/malformed ``procpar`` or ``fid``, size mismatch, unsupported layout
        (multi-slice, phase tables), non-finite samples.
    """
    import nmrglue.fileio.varian as ngv

    folder = os.fspath(path)
    if os.path.isfile(folder) and os.path.basename(folder) in ("fid", "procpar"):
        folder = os.path.dirname(folder) or "."
    fid = os.path.join(folder, "fid")
    ppath = os.path.join(folder, "procpar")
    if not os.path.isfile(fid):
        raise InputError(fid, "binary fid file not found" if not os.path.exists(fid) else "fid is a directory")
    pp = read_procpar(ppath)
    fh = fid_fileheader(fid)
    try:
        with np.errstate(invalid="ignore"):  # NaN samples are reported by KSpace.validate
            _, traces = ngv.read_fid(fid, as_2d=True)
    except Exception as err:
        raise InputError(fid, f"unreadable fid ({type(err).__name__}: {err})") from None
    traces = np.asarray(traces, dtype=np.complex64).reshape(fh["nblocks"] * fh["ntraces"], fh["np"] // 2)
    np_pp = _num(pp, "np", ppath)
    if np_pp is not None and int(np_pp) != fh["np"]:
        raise InputError(ppath, f"np = {int(np_pp)} but the fid header says {fh['np']}", "np")
    n_read = fh["np"] // 2
    sw = _num(pp, "sw", ppath)
    sfrq = _num(pp, "sfrq", ppath)
    nucleus = pp.get("tn") if isinstance(pp.get("tn"), str) else None
    nucleus = _nucleus_name(nucleus) if nucleus else "1H"
    nv = int(_num(pp, "nv", ppath, 0) or 0)
    extra = {"vendor": "Varian", "seqfil": str(pp.get("seqfil", "")),
             "sw_hz": sw, "nt": _num(pp, "nt", ppath), "sfrq_mhz": sfrq}
    common = dict(
        tr_ms=_ms(_num(pp, "tr", ppath)), te_ms=_ms(_num(pp, "te", ppath)),
        flip_angle_deg=_num(pp, "flip1", ppath), nucleus=nucleus,
        frequency_hz=None if sfrq is None else sfrq * 1e6, n_coils=1,
    )
    n_traces = traces.shape[0]
    if nv <= 0:
        if sw is None or sw <= 0:
            raise InputError(ppath, f"spectral width sw = {sw} must be positive", "sw")
        extra["dwell_s"] = 1.0 / sw
        header = KSpaceHeader(matrix=(n_read, 1, 1), fov_mm=(1.0, 1.0, 1.0), trajectory="spectroscopic",
                              n_repetitions=n_traces, extra=extra, **common)
        return KSpace(traces[:, None, :, None, None], header, source=fid)

    nv2 = max(int(_num(pp, "nv2", ppath, 0) or 0), 1)
    ns = int(_num(pp, "ns", ppath, 1) or 1)
    if ns != 1:
        raise InputError(ppath, f"ns = {ns} slices: only single-slice 2D and 3D scans are supported", "ns")
    petable = str(pp.get("petable", "") or "")
    if petable not in ("", "n"):
        raise InputError(ppath, f"phase-encode table {petable!r} is not in the folder: export linear-order data",
                         "petable")
    if n_traces % (nv * nv2):
        raise InputError(fid, f"{n_traces} traces are not a multiple of nv*nv2 = {nv * nv2}", "nv")
    reps = n_traces // (nv * nv2)
    lro, lpe = _num(pp, "lro", ppath), _num(pp, "lpe", ppath)
    third = _num(pp, "lpe2", ppath) if nv2 > 1 else _num(pp, "thk", ppath, 1.0)
    if lro is None or lpe is None:
        raise InputError(ppath, "imaging procpar needs lro and lpe (field of view, cm)", "lro")
    fov = (lro * 10.0, lpe * 10.0, third * 10.0 if nv2 > 1 else third)
    if any(f <= 0 for f in fov):
        raise InputError(ppath, f"absurd field of view {fov} mm", "lro")
    position, orientation, extra["geometry_source"] = procpar_geometry(pp, ppath, three_d=nv2 > 1)
    data = traces.reshape(reps, nv2, nv, n_read).transpose(0, 3, 2, 1)[:, None]
    header = KSpaceHeader(matrix=(n_read, nv, nv2), fov_mm=fov, n_repetitions=reps, extra=extra,
                          position_mm=position, orientation=orientation, **common)
    return KSpace(np.ascontiguousarray(data), header, source=fid)


def euler_rows(psi: float, phi: float, theta: float) -> np.ndarray:
    """Read, phase and slice directions (rows) in the magnet frame from VnmrJ's Euler angles (deg)."""
    ps, ph, th = np.deg2rad([psi, phi, theta])
    cps, sps, cph, sph, cth, sth = np.cos(ps), np.sin(ps), np.cos(ph), np.sin(ph), np.cos(th), np.sin(th)
    return np.array([
        [-sph * sps - cph * cth * cps, sph * cps - cph * cth * sps, sth * cph],
        [cph * sps - sph * cth * cps, -cph * cps - sph * cth * sps, sth * sph],
        [sth * cps, sth * sps, cth],
    ])


def procpar_geometry(pp: dict, ppath: str, three_d: bool = False) -> tuple[tuple, np.ndarray, str]:
    """RAS ``position_mm``, ``orientation`` and a source note from ``psi/phi/theta`` and ``pro/ppe/pss``."""
    if not all(k in pp for k in ("psi", "phi", "theta")):
        return (0.0, 0.0, 0.0), np.eye(3), "none (procpar lacks psi/phi/theta): set mri.geometry"
    rows = euler_rows(_num(pp, "psi", ppath), _num(pp, "phi", ppath), _num(pp, "theta", ppath))
    third = _num(pp, "ppe2", ppath, 0.0) if three_d else _num(pp, "pss", ppath, 0.0)
    offsets = 10.0 * np.array([_num(pp, "pro", ppath, 0.0), _num(pp, "ppe", ppath, 0.0), third])  # cm -> mm
    to_ras = np.diag([-1.0, -1.0, 1.0])
    position = to_ras @ rows.T @ offsets
    return (tuple(float(v) for v in position), to_ras @ rows.T,
            "procpar (psi/phi/theta, pro/ppe/pss; VnmrJ fdf orientation convention)")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _nucleus_name(tn: str) -> str:
    """VnmrJ ``C13``/``H1`` -> ``13C``/``1H``."""
    letters = "".join(c for c in tn if c.isalpha())
    digits = "".join(c for c in tn if c.isdigit())
    return f"{digits}{letters}" if letters and digits else tn
