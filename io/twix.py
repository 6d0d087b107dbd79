"""Siemens raw data (``meas_*.dat``, "twix", VB and VD/VE) via ``twixtools``.

``twixtools`` parses the protocol header (``MeasYaps`` ASCCONV) and the measurement
data blocks (one MDH per readout, ``Counter.Lin/Par/Rep/Ave/Sli``). We walk the
blocks ourselves with a bounded loop (a zero DMA length in a corrupt file would
loop forever in ``read_twix``), keep image scans of the last measurement
(multi-RAID files hold adjustment scans first), average ``Ave``, place each line
at ``Lin - CenterLin + N//2`` (``Par`` likewise) so that index ``N//2`` is k = 0
(see :mod:`dualmode.conventions`), and remove readout oversampling.

Oversampling removal (the standard Siemens/ICE step): the ADC samples the
readout at ``OS = 2`` times the Nyquist rate, i.e. the image FOV along x is doubled;
``ifft`` along the readout, keep the central ``N/OS`` pixels, ``fft`` back.

Header: ``sKSpace.lBaseResolution/lPhaseEncodingLines/lPartitions``,
``sSliceArray.asSlice[0].dReadoutFOV/dPhaseFOV/dThickness`` (mm), ``alTR/alTE``
(us), ``adFlipAngleDegree``, ``sTXSPEC.asNucleusInfo[0].tNucleus/lFrequency``.
Geometry: MDH ``SliceData`` position (Sag, Cor, Tra = LPS mm) and quaternion
(read/phase/slice directions, as in ``siemens_to_ismrmrd``) converted to RAS.
"""

from __future__ import annotations

import contextlib
import ctypes
import io as stdio
import os

import numpy as np

from dualmode.conventions import fft_centered, ifft_centered

from dualmode.errors import InputError, check_allocation
from dualmode.kspace import KSpace, KSpaceHeader

_LPS = np.array([-1.0, -1.0, 1.0])
_MAX_BLOCKS = 50_000_000
#: MDH flags of readouts a line-per-readout Cartesian reader must not take as plain lines.
_REFUSED_FLAGS = ("REFLECT", "PHASCOR", "PHASESTABSCAN", "REFPHASESTABSCAN", "RTFEEDBACK")


def remove_readout_oversampling(lines: np.ndarray, factor: int = 2, axis: int = -1) -> np.ndarray:
    """Crop the readout FOV by ``factor``: ifft along ``axis``, keep the centre, fft back.

    With ``n`` samples and ``m = n // factor``: ``x = ifft_centered(k)`` (FOV ``F``),
    ``x_c = x[n//2 - m//2 : n//2 - m//2 + m]`` (FOV ``F / factor``, same pixel values),
    ``k' = fft_centered(x_c)``; so ``ifft_centered(k') == x_c`` exactly.
    """
    n = lines.shape[axis]
    m = n // factor
    if factor < 1 or m < 1:
        raise ValueError(f"cannot remove oversampling {factor} from {n} samples")
    img = ifft_centered(lines, axes=(axis,))
    start = n // 2 - m // 2
    img = np.take(img, np.arange(start, start + m), axis=axis)
    return fft_centered(img, axes=(axis,)).astype(lines.dtype, copy=False)


def _walk_blocks(path: str):
    """Protocol header and image-scan MDBs of the last measurement, with bounded loops."""
    import twixtools.hdr_def as hdr_def
    import twixtools.helpers as helpers
    import twixtools.mdb as tmdb
    import twixtools.mdh_def as mdh_def
    import twixtools.twixprot as twixprot

    size = os.path.getsize(path)
    with open(path, "rb") as fid, contextlib.redirect_stdout(stdio.StringIO()):
        if size < 16:
            raise InputError(path, f"file is {size} bytes: too short for a twix header", "header")
        is_ve, n_scans = helpers.idea_version_check(fid)
        if is_ve:
            fid.seek(0)
            raid = np.fromfile(fid, dtype=hdr_def.MultiRaidFileHeader, count=1)
            if raid.size != 1:
                raise InputError(path, "truncated multi-RAID file header", "header")
            n_scans = int(raid[0]["hdr"]["count_"])
            if not 1 <= n_scans <= 64:
                raise InputError(path, f"multi-RAID header lists {n_scans} measurements", "header")
            entry = raid[0]["entry"][n_scans - 1]
            start, length = int(entry["off_"]), int(entry["len_"]) or size - int(entry["off_"])
        else:
            start, length = 0, size
        if start + 8 > size or length <= 0:
            raise InputError(path, f"measurement at byte {start} lies beyond the {size}-byte file", "header")
        end = min(start + length, size)
        fid.seek(start)
        hdr_len = int(np.fromfile(fid, dtype=hdr_def.SingleMeasInit, count=1)[0]["hdr_len"])
        if hdr_len < 8 or start + hdr_len > end:
            raise InputError(path, f"protocol header length {hdr_len} exceeds the file", "header")
        fid.seek(start)
        hdr = twixprot.parse_twix_hdr(fid)
        min_len = ctypes.sizeof(mdh_def.Scan_header if is_ve else mdh_def.VB17_header)
        pos, blocks, flags = start + hdr_len, [], set()
        while pos + 128 < end:
            fid.seek(pos)
            mdb = tmdb.Mdb(fid, is_ve)
            if mdb.is_flag_set("ACQEND"):
                break
            step = int(mdb.dma_len)
            if step < min_len or pos + step > end:
                raise InputError(path, f"measurement data block at byte {pos} declares {step} bytes "
                                 f"({end - pos} left): truncated or corrupt", "mdh")
            flags.update(f for f in _REFUSED_FLAGS if mdb.is_flag_set(f))
            if not mdb.is_flag_set("SYNCDATA") and mdb.is_image_scan():
                blocks.append(mdb)
                if len(blocks) > _MAX_BLOCKS:
                    raise InputError(path, "absurd number of readouts", "mdh")
            pos += step
    return hdr, blocks, flags


def _yaps(hdr: dict, path: str, *keys, kind=float, default=None):
    node = hdr.get("MeasYaps", {})
    for k in keys:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            if default is not None:
                return default
            raise InputError(path, f"protocol lacks MeasYaps.{'.'.join(map(str, keys))}",
                             ".".join(map(str, keys))) from None
    try:
        return kind(node)
    except (TypeError, ValueError):
        raise InputError(path, f"protocol value {node!r} is not a {kind.__name__}",
                         ".".join(map(str, keys))) from None


def refuse_unsupported(hdr: dict, flags: set, path: str) -> None:
    """Refuse EPI and its relatives (echo trains, reflected lines, navigators, ramp sampling).

    A line-per-readout Cartesian reader would put reflected EPI lines in unreflected,
    navigator (``PHASCOR``) echoes aside without their phase correction, and ramp-sampled
    readouts on a uniform grid: a silently wrong image. Names every flag found.
    """
    found = []
    epi = _yaps(hdr, path, "sFastImaging", "lEPIFactor", kind=int, default=1)
    if epi > 1:
        found.append(f"MeasYaps.sFastImaging.lEPIFactor = {epi} (EPI echo train)")
    found += [f"MDH flag {f}" + {"REFLECT": " (reflected lines)", "PHASCOR": " (phase-correction navigators)"}
              .get(f, "") for f in sorted(flags)]
    regrid = hdr.get("Meas", {}).get("alRegridMode")
    mode = regrid[0] if isinstance(regrid, list) and regrid else regrid
    if isinstance(mode, (int, float)) and mode > 1:
        found.append(f"Meas.alRegridMode = {int(mode)} (ramp sampling)")
    if found:
        raise InputError(path, "EPI-type readouts are not supported (only one Cartesian line per readout): "
                         + "; ".join(found), "mdh")


def _protocol(hdr: dict, path: str) -> dict:
    """Encoded matrix and FOV (mm) from ``MeasYaps``."""
    base = _yaps(hdr, path, "sKSpace", "lBaseResolution", kind=int)
    n_lin = _yaps(hdr, path, "sKSpace", "lPhaseEncodingLines", kind=int)
    dim3 = _yaps(hdr, path, "sKSpace", "ucDimension", kind=int, default=2) == 4
    n_par = _yaps(hdr, path, "sKSpace", "lPartitions", kind=int, default=1) if dim3 else 1
    slab = ("sSliceArray", "asSlice", 0)
    fov = (_yaps(hdr, path, *slab, "dReadoutFOV"), _yaps(hdr, path, *slab, "dPhaseFOV"),
           _yaps(hdr, path, *slab, "dThickness"))
    if min(base, n_lin, n_par) < 1 or any(not np.isfinite(f) or f <= 0 for f in fov):
        raise InputError(path, f"absurd geometry: base {base}, lines {n_lin}, partitions {n_par}, FOV {fov} mm",
                         "sKSpace")
    return dict(base=base, n_lin=n_lin, dim3=dim3, n_par=n_par, fov=fov)


def _lines(blocks: list, prot: dict, path: str) -> dict:
    """Average ``Ave`` into ``(rep, lin, par, coil, col)`` with line/partition/repetition indices."""
    mdh = [b.mdh for b in blocks]
    ncol = {int(m.SamplesInScan) for m in mdh}
    ncha = {int(m.UsedChannels) for m in mdh}
    if len(ncol) != 1 or len(ncha) != 1 or 0 in ncol | ncha:
        raise InputError(path, f"readouts differ in length {sorted(ncol)} or channels {sorted(ncha)}", "mdh")
    if {int(m.Counter.Sli) for m in mdh} != {0}:
        raise InputError(path, "multi-slice 2D data are not supported (Counter.Sli > 0)", "Counter.Sli")
    n_lin, n_par = prot["n_lin"], prot["n_par"]
    lin = np.array([m.Counter.Lin for m in mdh]) - np.array([m.CenterLin for m in mdh]) + n_lin // 2
    par = np.array([m.Counter.Par for m in mdh]) - (
        np.array([m.CenterPar for m in mdh]) - n_par // 2 if prot["dim3"] else 0)
    rep = np.array([m.Counter.Rep for m in mdh])
    if lin.min() < 0 or lin.max() >= n_lin or par.min() < 0 or par.max() >= n_par:
        raise InputError(path, f"line/partition counters fall outside the {n_lin}x{n_par} encoded matrix",
                         "Counter.Lin")
    ncol, ncha, n_rep = ncol.pop(), ncha.pop(), int(rep.max()) + 1
    check_allocation(path, "data", (n_rep, ncha, ncol, n_lin, n_par), 8)
    acc = np.zeros((n_rep, n_lin, n_par, ncha, ncol), np.complex64)
    count = np.zeros((n_rep, n_lin, n_par), np.int64)
    for b, r, j, k in zip(blocks, rep, lin, par):
        try:
            acc[r, j, k] += b.data
        except (ValueError, OSError) as err:
            raise InputError(path, f"unreadable readout data ({err})", "mdh") from None
        count[r, j, k] += 1
    acc /= np.maximum(count, 1)[..., None, None]
    order = np.full((n_lin, n_par), -1, np.int64)
    first = rep == 0
    order[lin[first], par[first]] = np.arange(int(first.sum()))
    return dict(acc=acc, count=count, order=order, ncol=ncol, ncha=ncha, n_rep=n_rep, mdh0=mdh[0])


def _slice_geometry(mdh0) -> tuple[tuple, np.ndarray, str]:
    """RAS position and orientation from the first readout's ``SliceData`` (LPS position + quaternion)."""
    q = mdh0.SliceData
    read_d, phase_d, slice_d = _directions(q.Quaternion)
    rot = np.stack([read_d, phase_d, slice_d], axis=1) * _LPS[:, None]
    pos = np.array([q.SlicePos.Sag, q.SlicePos.Cor, q.SlicePos.Tra], float) * _LPS
    ok_rot = np.allclose(rot.T @ rot, np.eye(3), atol=1e-3)
    ok_pos = bool(np.all(np.isfinite(pos)))
    source = "MDH SliceData (SlicePos, Quaternion), LPS -> RAS" if ok_rot and ok_pos else \
        "none (MDH SliceData unusable): set mri.geometry"
    return (tuple(pos) if ok_pos else (0.0, 0.0, 0.0)), (rot if ok_rot else np.eye(3)), source


def read_twix(path: str | os.PathLike, oversampling: int | None = None) -> KSpace:
    """Read a Cartesian Siemens twix ``.dat`` file into :class:`KSpace`.

    Parameters
    ----------
    path : path-like
        ``meas_*.dat`` (VB or VD/VE; the last measurement of a multi-RAID file).
    oversampling : int, optional
        Readout oversampling to remove; default from ``Meas.flReadoutOSFactor``
        or 2 when the readout has twice ``lBaseResolution`` samples, else 1.

    Raises
    ------
    InputError
        Corrupt/truncated blocks, missing protocol values, multi-slice data, EPI
        (echo trains, reflected lines, navigators, ramp sampling: :func:`refuse_unsupported`),
        lines outside the encoded matrix, non-finite samples.

    Examples
    --------
    >>> ksp = read_twix("meas_MID00042_gre.dat")  # doctest: +SKIP
    >>> ksp.header.affine()  # voxel -> RAS mm from the MDH slice position and quaternion  # doctest: +SKIP
    """
    path = os.fspath(path)
    hdr, blocks, flags = _walk_blocks(path)
    if not blocks:
        raise InputError(path, "no imaging readouts in the last measurement", "mdh")
    refuse_unsupported(hdr, flags, path)
    prot = _protocol(hdr, path)
    got = _lines(blocks, prot, path)
    os_factor = oversampling
    if os_factor is None:
        os_meas = hdr.get("Meas", {}).get("flReadoutOSFactor")
        os_factor = int(round(float(os_meas))) if isinstance(os_meas, (int, float)) else (
            2 if got["ncol"] == 2 * prot["base"] else 1)
    acc = got["acc"]
    if os_factor > 1:
        acc = remove_readout_oversampling(acc, os_factor, axis=-1)
    data = np.ascontiguousarray(np.transpose(acc, (0, 3, 4, 1, 2)))
    position, orientation, source = _slice_geometry(got["mdh0"])
    nuc = hdr.get("MeasYaps", {}).get("sTXSPEC", {}).get("asNucleusInfo", [{}])
    nuc = nuc[0] if isinstance(nuc, list) and nuc and isinstance(nuc[0], dict) else {}
    order = got["order"]
    header = KSpaceHeader(
        matrix=(got["ncol"] // os_factor, prot["n_lin"], prot["n_par"]), fov_mm=prot["fov"],
        position_mm=position, orientation=orientation,
        tr_ms=_yaps(hdr, path, "alTR", 0, default=np.nan) / 1e3 or None,
        te_ms=_yaps(hdr, path, "alTE", 0, default=np.nan) / 1e3 or None,
        flip_angle_deg=_yaps(hdr, path, "adFlipAngleDegree", 0, default=np.nan),
        nucleus=str(nuc.get("tNucleus", "1H")).strip('"') or "1H",
        frequency_hz=float(nuc["lFrequency"]) if isinstance(nuc.get("lFrequency"), (int, float)) else None,
        n_repetitions=got["n_rep"], n_coils=got["ncha"],
        line_order=order if np.all(order >= 0) else None,
        extra={"vendor": "Siemens", "readout_oversampling": os_factor,
               "unsampled_lines": int((got["count"][0] == 0).sum()), "center_col": int(got["mdh0"].CenterCol),
               "geometry_source": source, "sources": _SOURCES},
    )
    for key in ("tr_ms", "te_ms", "flip_angle_deg"):
        val = getattr(header, key)
        if val is not None and not np.isfinite(val):
            setattr(header, key, None)
    return KSpace(data, header, source=path)


_SOURCES = {"matrix": "MeasYaps sKSpace.lBaseResolution/lPhaseEncodingLines/lPartitions",
            "fov_mm": "MeasYaps sSliceArray.asSlice[0].dReadoutFOV/dPhaseFOV/dThickness",
            "position_mm": "MDH SliceData.SlicePos (LPS)", "orientation": "MDH SliceData.Quaternion",
            "tr_ms": "MeasYaps alTR[0]", "te_ms": "MeasYaps alTE[0]", "flip_angle_deg": "MeasYaps adFlipAngleDegree[0]",
            "nucleus": "MeasYaps sTXSPEC.asNucleusInfo[0].tNucleus", "frequency_hz": "sTXSPEC lFrequency",
            "n_repetitions": "MDH Counter.Rep"}


def _directions(quat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from twixtools.quat import quaternion_to_directions

    q = np.asarray(list(quat), float)
    if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-6:
        return np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
    return tuple(np.asarray(d, float) for d in quaternion_to_directions(q / np.linalg.norm(q)))
