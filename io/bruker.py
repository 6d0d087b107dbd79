"""Bruker ParaVision experiment folders (``fid`` + ``acqp`` + ``method``; PV 5 to PV 360).

The raw file holds readout blocks in acquisition order. For Cartesian methods
(FLASH, RARE, FISP, 3D variants) the loops run, innermost first::

    read (ACQ_size[0] reals = re/im pairs) x receivers      one block
    ACQ_phase_factor (echo train) x NI (slices/echoes)
    ACQ_size[1] / ACQ_phase_factor x ACQ_size[2] (3D) x NR (repetitions)

(ParaVision "Acquisition Parameters" manual). Samples are ``GO_raw_data_format`` (int16/int32/
float32/float64) in ``BYTORDA`` byte order; with ``GO_block_size =
Standard_KBlock_Format`` (older PV) each block is zero-padded to a multiple of
1024 bytes. ``PVM_EncSteps1/2`` give the k-space line of each acquired phase step,
centred (``-N/2 .. N/2-1``). The acquired grid is ``PVM_EncMatrix`` over
``PVM_Fov * PVM_AntiAlias`` (mm).

1D spectroscopic scans (``ACQ_dim_desc = Spectroscopic``, one FID per repetition) give
``trajectory = "spectroscopic"``, matrix ``(n, 1, 1)``, ``extra["dwell_s"] = 1 / SW_h``.

Multi-slice 2D (``NI`` objects, ``ACQ_obj_order``): position ``a`` of the ``NI`` loop
holds object ``ACQ_obj_order[a]``. Parallel slices of one package form one volume whose
third axis is the slice stack, stored as its centred DFT so that the 3D inverse FFT of
every reconstruction returns the slices (``extra["slice_stack"] = True``); packages with
different orientations are read one at a time (``read_bruker(path, package=k)``,
:func:`bruker_packages` lists them). Multi-echo and movie ``NI`` are refused.

Geometry: :mod:`dualmode.io.bruker_geometry` (RAS from gradient matrices and offsets,
checked against ``pdata/1/visu_pars``); the manifest's ``mri.geometry`` still overrides.
"""

from __future__ import annotations

import os

import numpy as np

from dualmode.conventions import fft_centered
from dualmode.errors import InputError, check_allocation
from .bruker_geometry import (check_against_visu, magnet_to_ras, object_geometry, package_geometry,
                              parameter_sources)
from .jcamp import read_jcamp
from dualmode.kspace import KSpace, KSpaceHeader

_FORMATS = {
    "GO_16BIT_SGN_INT": "i2",
    "GO_32BIT_SGN_INT": "i4",
    "GO_32BIT_FLOAT": "f4",
    "GO_64BIT_FLOAT": "f8",
}
_WORD_SIZE = {"_16_BIT": "i2", "_32_BIT": "i4"}
_DATA_FILES = ("fid", "rawdata.job0")


def read_bruker_params(folder: str | os.PathLike) -> tuple[dict, dict]:
    """``(acqp, method)`` parameter dicts of an experiment folder (``method`` may be ``{}``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(folder, "a Bruker experiment is a folder holding acqp, method and fid")
    acqp = read_jcamp(os.path.join(folder, "acqp"))
    mpath = os.path.join(folder, "method")
    method = read_jcamp(mpath) if os.path.exists(mpath) else {}
    return acqp, method


def _get(params: dict, key: str, path: str, kind=float, default=None, index=None):
    """Typed parameter value; raise :class:`InputError` naming ``key`` when malformed."""
    if key not in params:
        if default is None:
            raise InputError(path, f"required parameter {key} is missing", key)
        return default
    val = params[key]
    try:
        if index is not None:
            val = np.asarray(val).ravel()[index]
        return kind(val)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise InputError(path, f"{key} = {str(val)[:60]!r} is not a valid {kind.__name__}", key) from None


def _ints(params: dict, key: str, path: str, n: int | None = None) -> np.ndarray | None:
    if key not in params:
        return None
    val = params[key]
    arr = np.atleast_1d(np.asarray(val))
    if arr.dtype.kind not in "iu" or (n is not None and arr.size < n):
        raise InputError(path, f"{key} = {str(val)[:60]!r} should be {n or ''} integers", key)
    return arr.astype(np.int64).ravel()


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _nucleus(params: dict) -> str | None:
    for key in ("PVM_Nucleus1", "NUC1", "NUCLEUS"):
        val = params.get(key)
        if isinstance(val, str) and val and val.lower() != "off":
            return val
    return None


def _raw_layout(acqp: dict, method: dict, apath: str, mpath: str) -> dict:
    """Loop sizes and sample format of the raw file (``ACQ_size``, ``NI``, ``NR``, receivers, dtype)."""
    dim = _get(acqp, "ACQ_dim", apath, int)
    size = _ints(acqp, "ACQ_size", apath, n=max(dim, 1))
    if size is None:
        raise InputError(apath, "required parameter ACQ_size is missing", "ACQ_size")
    if dim < 1 or dim > 3 or np.any(size[:dim] < 1) or size[0] % 2:
        raise InputError(apath, f"ACQ_dim={dim}, ACQ_size={size.tolist()} is not a valid acquisition size",
                         "ACQ_size")
    n_phase = int(size[1]) if dim > 1 else 1
    ni = _get(acqp, "NI", apath, int, 1)
    nr = _get(acqp, "NR", apath, int, 1)
    pf = _get(acqp, "ACQ_phase_factor", apath, int, 1)
    if ni < 1 or nr < 1 or pf < 1 or n_phase % pf:
        raise InputError(apath, f"NI={ni}, NR={nr}, ACQ_phase_factor={pf} inconsistent with ACQ_size "
                         f"{size.tolist()}", "ACQ_phase_factor")
    coils = _get(method, "PVM_EncNReceivers", mpath, int, 0)
    if coils == 0:
        sel = acqp.get("ACQ_ReceiverSelect")
        coils = sum(1 for s in sel if s == "Yes") if isinstance(sel, list) else 1
    if coils < 1:
        raise InputError(mpath, f"{coils} receivers", "PVM_EncNReceivers")
    fmt = acqp.get("GO_raw_data_format")
    fmt_dtype = _WORD_SIZE.get(str(acqp.get("ACQ_word_size", "_32_BIT"))) if fmt is None else _FORMATS.get(str(fmt))
    if fmt_dtype is None:
        raise InputError(apath, f"unsupported raw data format {fmt or acqp.get('ACQ_word_size')!r}",
                         "GO_raw_data_format")
    order = str(acqp.get("BYTORDA", "little")).lower()
    if order not in ("little", "big"):
        raise InputError(apath, f"BYTORDA must be little or big, got {order!r}", "BYTORDA")
    dtype = np.dtype(("<" if order == "little" else ">") + fmt_dtype)
    n_read = int(size[0]) // 2
    block = n_read * 2 * coils * dtype.itemsize
    if str(acqp.get("GO_block_size", "continuous")) == "Standard_KBlock_Format":
        block = -(-block // 1024) * 1024
    return dict(dim=dim, n_read=n_read, n_phase=n_phase, n_slab=int(size[2]) if dim > 2 else 1, NI=ni, NR=nr,
                phase_factor=pf, coils=coils, dtype=dtype, block_bytes=block)


def _encoding(method: dict, lay: dict, apath: str, mpath: str) -> tuple[int, int, list[np.ndarray]]:
    """Full grid sizes along j, k and the zero-based grid index of every acquired step."""
    n_read, n_phase, n_slab = lay["n_read"], lay["n_phase"], lay["n_slab"]
    enc = _ints(method, "PVM_EncMatrix", mpath)
    grid_j = _grid(method, 1, n_phase, mpath)
    grid_k = _grid(method, 2, n_slab, mpath)
    if enc is not None and int(enc[0]) != n_read:
        raise InputError(apath, f"readout has {n_read} complex samples but PVM_EncMatrix[0] = {int(enc[0])}: "
                         "not a line-per-readout Cartesian scan (EPI, spiral or radial are not supported)",
                         "ACQ_size")
    steps = []
    for key, n_acq, grid in (("PVM_EncSteps1", n_phase, grid_j), ("PVM_EncSteps2", n_slab, grid_k)):
        st = _ints(method, key, mpath)
        if st is None or st.size != n_acq:  # linear, centred order
            st = np.arange(n_acq) - n_acq // 2
        idx = st + grid // 2
        if n_acq > grid or np.any(idx < 0) or np.any(idx >= grid):
            raise InputError(mpath, f"{key} steps {st.min()}..{st.max()} fall outside the {grid}-line grid", key)
        steps.append(idx)
    return grid_j, grid_k, steps


def _objects(acqp: dict, lay: dict, apath: str) -> None:
    """Refuse ``NI`` loops that are not slices (echoes, movie frames)."""
    for key in ("NECHOES", "ACQ_n_echo_images", "ACQ_n_movie_frames"):
        n = _get(acqp, key, apath, int, 1)
        if n > 1 and lay["NI"] > 1:
            raise InputError(apath, f"{key} = {n}: NI = {lay['NI']} holds echoes or frames, not only slices; "
                             "multi-echo and movie scans are not supported", key)
    nsl = _get(acqp, "NSLICES", apath, int, lay["NI"])
    if nsl != lay["NI"]:
        raise InputError(apath, f"NSLICES = {nsl} but NI = {lay['NI']}", "NI")


def _scan_params(acqp: dict, method: dict, apath: str, mpath: str) -> dict:
    """TR, TE (ms), flip (deg), frequency (Hz), nucleus."""
    tr = _get(method, "PVM_RepetitionTime", mpath, float,
              _get(acqp, "ACQ_repetition_time", apath, float, np.nan, index=0))
    te = _get(method, "PVM_EchoTime", mpath, float, _get(acqp, "ACQ_echo_time", apath, float, np.nan, index=0))
    flip = _get(acqp, "ACQ_flip_angle", apath, float, np.nan)
    if not np.isfinite(flip) and isinstance(method.get("ExcPulse1"), list) and len(method["ExcPulse1"]) > 2:
        flip = _get({"ExcPulse1": method["ExcPulse1"][2]}, "ExcPulse1", mpath, float)
    freq_mhz = _get(acqp, "SFO1", apath, float, _get(acqp, "BF1", apath, float, np.nan))
    return dict(tr_ms=_finite(tr), te_ms=_finite(te), flip_angle_deg=_finite(flip),
                nucleus=_nucleus(method) or _nucleus(acqp) or "1H", frequency_hz=_finite(freq_mhz * 1e6))


def bruker_packages(acqp: dict, method: dict, path: str = "") -> list[dict]:
    """Slice packages of a scan: ``objects`` (object indices, sorted along the normal),
    RAS ``orientation``/``position_mm``, ``spacing_mm``; one package for 3D or unknown geometry."""
    apath = os.path.join(path, "acqp")
    lay = _raw_layout(acqp, method, apath, os.path.join(path, "method"))
    thick = _get(method, "PVM_SliceThick", os.path.join(path, "method"), float,
                 _get(acqp, "ACQ_slice_thick", apath, float, 1.0))
    d_ras = magnet_to_ras(str(acqp.get("ACQ_patient_pos", "")))
    objs, source = object_geometry(acqp, method, lay["NI"], path)
    if d_ras is None or objs is None:
        if lay["NI"] > 1:
            why = source if objs is None else f"ACQ_patient_pos = {acqp.get('ACQ_patient_pos')!r} is not modelled"
            raise InputError(apath, f"NI = {lay['NI']} slices but no slice geometry ({why})", "ACQ_grad_matrix")
        why = source if objs is None else f"ACQ_patient_pos {acqp.get('ACQ_patient_pos')!r} not modelled"
        return [{"objects": [0], "orientation": np.eye(3), "position_mm": (0.0, 0.0, 0.0), "spacing_mm": thick,
                 "source": f"none ({why}): set mri.geometry"}]
    out = []
    for p in sorted({o["package"] for o in objs}):
        members = [i for i, o in enumerate(objs) if o["package"] == p]
        geo = package_geometry(objs, members, d_ras, thick, apath)
        geo["source"] = f"{source}, ACQ_patient_pos = {acqp.get('ACQ_patient_pos')}"
        out.append(geo)
    return out


def bruker_header(acqp: dict, method: dict, path: str = "", package: int | None = None) -> tuple[KSpaceHeader, dict]:
    """Header and raw layout of a Bruker experiment (one slice package) from its parameters.

    Returns
    -------
    header : KSpaceHeader
        Acquired Cartesian grid (``PVM_EncMatrix``; 2D multi-slice: the package's slices
        along k), FOV in mm, RAS geometry, TR/TE (ms), flip (deg), nucleus, ``SFO1`` (Hz),
        repetitions ``NR``, receivers; ``extra["sources"]`` names the parameter behind each value.
    layout : dict
        ``dtype``, ``block_bytes``, ``n_read``, ``n_phase``, ``n_slab``, ``NI``,
        ``phase_factor``, ``steps1``/``steps2`` grid indices, ``objects`` of the package
        and their acquisition ``positions`` in the ``NI`` loop.
    """
    apath, mpath = os.path.join(path, "acqp"), os.path.join(path, "method")
    lay = _raw_layout(acqp, method, apath, mpath)
    grid_j, grid_k, steps = _encoding(method, lay, apath, mpath)
    _objects(acqp, lay, apath)
    desc = acqp.get("ACQ_dim_desc")
    spectroscopic = lay["dim"] == 1 and (desc == "Spectroscopic" or desc == ["Spectroscopic"])
    fov = (1.0, 1.0, 1.0) if spectroscopic else _fov_mm(acqp, method, apath, mpath, lay["dim"])
    if any(not np.isfinite(f) or f <= 0 for f in fov):
        raise InputError(mpath, f"absurd field of view {fov} mm", "PVM_Fov")
    pkgs = bruker_packages(acqp, method, path) if not spectroscopic else [
        {"objects": [0], "orientation": np.eye(3), "position_mm": (0.0, 0.0, 0.0), "spacing_mm": 1.0,
         "source": "none (spectroscopic)"}]
    if package is None and len(pkgs) > 1:
        raise InputError(apath, f"{len(pkgs)} slice packages with different orientations: choose one with "
                         f"package=0..{len(pkgs) - 1} (manifest: mri.source.package)", "package")
    k = package or 0
    if not 0 <= k < len(pkgs):
        raise InputError(apath, f"package {k} requested, the scan has {len(pkgs)}", "package")
    pkg = pkgs[k]
    n_sl = len(pkg["objects"])
    if n_sl > 1:
        fov = (fov[0], fov[1], pkg["spacing_mm"] * n_sl)
    line_order = np.zeros((grid_j, grid_k), np.int64) - 1
    jj, kk = np.meshgrid(steps[0], steps[1], indexing="ij")
    line_order[jj, kk] = np.arange(lay["n_phase"])[:, None] + lay["n_phase"] * np.arange(lay["n_slab"])[None, :]
    if n_sl > 1:  # each slice is its own magnetization: the same excitation index on every slice
        line_order = np.repeat(line_order, n_sl, axis=1)
    order = np.atleast_1d(np.asarray(acqp.get("ACQ_obj_order", np.arange(lay["NI"])))).astype(int).ravel()
    extra = {
        "vendor": "Bruker", "pv_version": str(acqp.get("ACQ_sw_version", "")),
        "method": str(method.get("Method", acqp.get("ACQ_method", ""))),
        "sw_hz": _get(acqp, "SW_h", apath, float, np.nan),
        "unsampled_lines": int((line_order < 0).sum()),
        "geometry_source": pkg["source"], "package": k, "n_packages": len(pkgs),
        "slice_thickness_mm": float(_get(method, "PVM_SliceThick", mpath, float,
                                         _get(acqp, "ACQ_slice_thick", apath, float, fov[2]))),
        "sources": parameter_sources(method, pkg["source"]),
    }
    if n_sl > 1:
        extra.update(slice_stack=True, slice_spacing_mm=pkg["spacing_mm"])
    if spectroscopic:  # FIDs (e.g. dynamic hyperpolarized 13C): one per repetition, 1 mm placeholder geometry
        extra["dwell_s"] = 1.0 / extra["sw_hz"] if extra["sw_hz"] > 0 else None
    header = KSpaceHeader(
        matrix=(lay["n_read"], grid_j, grid_k * n_sl), fov_mm=fov,
        position_mm=pkg["position_mm"], orientation=pkg["orientation"],
        trajectory="spectroscopic" if spectroscopic else "cartesian",
        n_repetitions=lay["NR"], n_coils=lay["coils"],
        line_order=line_order if extra["unsampled_lines"] == 0 else None,
        extra=extra, **_scan_params(acqp, method, apath, mpath),
    )
    lay.update(steps1=steps[0], steps2=steps[1], objects=pkg["objects"],
               positions=[int(np.flatnonzero(order[: lay["NI"]] == o)[0]) if lay["NI"] > 1 else 0
                          for o in pkg["objects"]])
    return header, lay


def _grid(method: dict, axis: int, n_acq: int, mpath: str) -> int:
    """Full k-space lines along ``axis``: ``PVM_Matrix * PVM_AntiAlias / PVM_EncZf``
    (partial Fourier acquires fewer, ``PVM_EncSteps`` place them), else ``PVM_EncMatrix``."""
    for key in ("PVM_Matrix", "PVM_EncMatrix"):
        arr = _ints(method, key, mpath)
        if arr is not None and arr.size > axis:
            if key == "PVM_EncMatrix":
                return int(arr[axis])
            try:
                aa = np.atleast_1d(np.asarray(method.get("PVM_AntiAlias", [1, 1, 1]), dtype=float)).ravel()
                zf = np.atleast_1d(np.asarray(method.get("PVM_EncZf", [1, 1, 1]), dtype=float)).ravel()
                n = float(arr[axis]) * (aa[axis] if aa.size > axis else 1.0) / (zf[axis] if zf.size > axis else 1.0)
            except (TypeError, ValueError):
                raise InputError(mpath, "PVM_AntiAlias/PVM_EncZf are not numeric", "PVM_EncZf") from None
            if not np.isfinite(n) or n < 1:
                raise InputError(mpath, f"k-space grid {n} lines along axis {axis}", "PVM_Matrix")
            return int(round(n))
    return n_acq


def _fov_mm(acqp: dict, method: dict, apath: str, mpath: str, dim: int) -> tuple[float, float, float]:
    if "PVM_Fov" in method:
        fov = np.atleast_1d(np.asarray(method["PVM_Fov"], dtype=object)).ravel()
        where, scale = mpath, 1.0
        anti = method.get("PVM_AntiAlias", np.ones(fov.size))
    elif "ACQ_fov" in acqp:
        fov = np.atleast_1d(np.asarray(acqp["ACQ_fov"], dtype=object)).ravel()
        where, scale, anti = apath, 10.0, np.ones(fov.size)  # ACQ_fov is in cm
    else:
        raise InputError(mpath, "no field of view (PVM_Fov or ACQ_fov)", "PVM_Fov")
    try:
        fov = np.asarray(fov, dtype=float) * scale
        anti = np.atleast_1d(np.asarray(anti, dtype=float)).ravel()
        fov = fov * (anti[: fov.size] if anti.size >= fov.size else 1.0)
    except (TypeError, ValueError):
        raise InputError(where, f"field of view {fov.tolist()} is not numeric", "PVM_Fov") from None
    if fov.size < min(dim, 2):
        raise InputError(where, f"field of view has {fov.size} entries for a {dim}D scan", "PVM_Fov")
    if dim < 3 or fov.size < 3:
        thick = _get(method, "PVM_SliceThick", mpath, float, _get(acqp, "ACQ_slice_thick", apath, float, 1.0))
        fov = np.array([fov[0], fov[1] if fov.size > 1 else fov[0], thick])
    return tuple(float(f) for f in fov[:3])


def read_bruker(path: str | os.PathLike, package: int | None = None) -> KSpace:
    """Read a Cartesian ParaVision experiment folder into :class:`KSpace`.

    Parameters
    ----------
    path : path-like
        Experiment folder (``.../<study>/<expno>``) holding ``acqp``, ``method`` and
        ``fid`` (or PV 360's ``rawdata.job0``).
    package : int, optional
        Slice package to read when the scan has several with different orientations
        (a tripilot); :func:`bruker_packages` lists them.

    Raises
    ------
    InputError
        Missing/malformed parameters, non-Cartesian, multi-echo scans, several packages
        without ``package``, raw file size not matching the parameters (names both).

    Examples
    --------
    >>> read_bruker("study/100", package=0).header.affine()  # voxel -> RAS mm  # doctest: +SKIP
    """
    folder = os.fspath(path)
    if os.path.isfile(folder) and os.path.basename(folder) in ("fid", "acqp", "method", "rawdata.job0"):
        folder = os.path.dirname(folder) or "."
    acqp, method = read_bruker_params(folder)
    header, lay = bruker_header(acqp, method, folder, package)
    raw = next((os.path.join(folder, n) for n in _DATA_FILES if os.path.exists(os.path.join(folder, n))), None)
    if raw is None:
        raise InputError(os.path.join(folder, "fid"), "raw data file (fid or rawdata.job0) not found")
    if not os.path.isfile(raw):
        raise InputError(raw, "expected a raw data file, found a directory")
    lines = _read_lines(raw, header, lay)
    data = _place_lines(lines, header, lay)
    check_against_visu(folder, header)
    return KSpace(data, header, source=raw)


def _read_lines(raw: str, header: KSpaceHeader, lay: dict) -> np.ndarray:
    """Raw readouts as ``(rep, slab, phase step, NI position, coil, read)``, file size checked."""
    nr, coils, n_read, ni, pf = header.n_repetitions, header.n_coils, lay["n_read"], lay["NI"], lay["phase_factor"]
    n_blocks = nr * lay["n_slab"] * lay["n_phase"] * ni
    check_allocation(raw, "ACQ_size", (n_blocks, lay["block_bytes"]), 1)
    check_allocation(raw, "ACQ_size", (nr, coils, *header.matrix), 8)
    expect = n_blocks * lay["block_bytes"]
    size = os.path.getsize(raw)
    if size != expect:
        what = "truncated" if size < expect else "larger than declared"
        raise InputError(raw, f"file is {what}: {size} bytes, but acqp/method declare {expect} (NR={nr} x slab "
                         f"{lay['n_slab']} x phase {lay['n_phase']} x NI {ni} x block {lay['block_bytes']} B)",
                         "ACQ_size")
    buf = np.fromfile(raw, dtype=np.uint8, count=expect).reshape(n_blocks, lay["block_bytes"])
    used = buf[:, : n_read * 2 * coils * lay["dtype"].itemsize]
    vals = np.ascontiguousarray(used).view(lay["dtype"]).astype(np.float32)
    # loops, innermost first: read x coil, echo train (phase_factor), NI, phase / pf, slab, NR
    lines = (vals[..., 0::2] + 1j * vals[..., 1::2]).astype(np.complex64).reshape(
        nr, lay["n_slab"], lay["n_phase"] // pf, ni, pf, coils, n_read)
    return np.moveaxis(lines, 3, 4).reshape(nr, lay["n_slab"], lay["n_phase"], ni, coils, n_read)


def _place_lines(lines: np.ndarray, header: KSpaceHeader, lay: dict) -> np.ndarray:
    """Cartesian k-space ``(rep, coil, i, j, k)``; a slice stack becomes the centred DFT along k."""
    nr, coils = header.n_repetitions, header.n_coils
    n_sl = len(lay["objects"])
    grid_k = header.matrix[2] // n_sl
    data = np.zeros((nr, coils, header.matrix[0], header.matrix[1], grid_k, n_sl), np.complex64)
    j = lay["steps1"]
    for s, pos in enumerate(lay["positions"]):
        for t, k in enumerate(lay["steps2"]):
            data[:, :, :, j, k, s] = np.transpose(lines[:, t, :, pos], (0, 2, 3, 1))
    data = data.reshape(nr, coils, *header.matrix)
    if n_sl > 1:
        data = fft_centered(data, axes=(-1,)).astype(np.complex64)
    return data
