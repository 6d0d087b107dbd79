"""ISMRMRD HDF5 k-space (the vendor-neutral raw-data standard), read and write.

One ISMRMRD acquisition is one readout line (``k_i`` samples x coils) with
``idx.kspace_encode_step_1/2`` giving ``k_j``/``k_k`` and ``idx.repetition`` the
shot. Geometry: ``read_dir/phase_dir/slice_dir`` and ``position`` are in the
ISMRMRD patient frame (LPS); we convert to RAS on read. ``scan_counter`` order
within a repetition becomes :attr:`KSpaceHeader.line_order`. Reading needs h5py only (the
XML header: :mod:`dualmode.io.ismrmrd_header`); writing uses the ``ismrmrd`` package.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from dualmode.errors import InputError, check_allocation, check_recon_allocation
from dualmode.kspace import KSpace, KSpaceHeader
from .ismrmrd_header import parse_header

_LPS = np.array([-1.0, -1.0, 1.0])
#: gamma(13C) / gamma(1H)
C13_TO_H1 = 0.251449530


_TRAJECTORY_TYPES = {"cartesian": "cartesian", "radial": "radial", "spiral": "spiral",
                     "goldenangle": "goldenangle"}


def _header_xml(h: KSpaceHeader) -> str:
    import ismrmrd.xsd as x

    def space(matrix, fov):
        return x.encodingSpaceType(
            matrixSize=x.matrixSizeType(x=int(matrix[0]), y=int(matrix[1]), z=int(matrix[2])),
            fieldOfView_mm=x.fieldOfViewMm(x=float(fov[0]), y=float(fov[1]), z=float(fov[2])),
        )

    lim = lambda n: x.limitType(minimum=0, maximum=max(int(n) - 1, 0), center=int(n) // 2)  # noqa: E731
    enc = x.encodingType(
        encodedSpace=space(h.matrix, h.fov_mm),
        reconSpace=space(h.matrix, h.fov_mm),
        encodingLimits=x.encodingLimitsType(
            kspace_encoding_step_1=lim(h.matrix[1]),
            kspace_encoding_step_2=lim(h.matrix[2]),
            repetition=lim(h.n_repetitions),
        ),
        trajectory=_TRAJECTORY_TYPES.get(h.trajectory, "other"),
    )
    freq = h.frequency_hz or 0.0
    h1 = int(round(freq / C13_TO_H1)) if h.nucleus == "13C" else int(round(freq))
    params = x.userParametersType(
        userParameterString=[x.userParameterStringType(name="nucleus", value=h.nucleus)],
        userParameterDouble=[x.userParameterDoubleType(name="frequency_hz", value=float(freq))],
    )
    seq = x.sequenceParametersType(
        TR=[float(h.tr_ms)] if h.tr_ms is not None else [],
        TE=[float(h.te_ms)] if h.te_ms is not None else [],
        flipAngle_deg=[float(h.flip_angle_deg)] if h.flip_angle_deg is not None else [],
    )
    hdr = x.ismrmrdHeader(
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=h1),
        encoding=[enc],
        sequenceParameters=seq,
        userParameters=params,
        acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=int(h.n_coils)),
    )
    return x.ToXML(hdr)


def write_ismrmrd(path: str | os.PathLike, ksp: KSpace) -> None:
    """Write :class:`KSpace` to an ISMRMRD HDF5 file (``/dataset``).

    Cartesian: one acquisition per acquired line, in excitation order. Non-Cartesian:
    one acquisition per readout of ``header.extra["readout_length"]`` samples with its
    trajectory (``traj``, 3 dimensions, cycles per FOV: the dualmode k-space unit).
    """
    import ismrmrd

    h = ksp.header
    path = os.fspath(path)
    if os.path.exists(path):
        os.remove(path)
    rot = np.asarray(h.orientation, dtype=float)
    if h.trajectory == "cartesian":
        order = h.line_order if h.line_order is not None else np.arange(h.matrix[1] * h.matrix[2]).reshape(h.matrix[1:])
        lines = np.argsort(order, axis=None)  # time order of (j, k) lines
        if ksp.mask is not None:
            lines = lines[np.asarray(ksp.mask).ravel()[lines]]
        n_lines, n_read = lines.size, h.matrix[0]
        j, k = np.unravel_index(np.tile(lines, h.n_repetitions), h.matrix[1:])
        rep = np.repeat(np.arange(h.n_repetitions), n_lines)
        lines_data = ksp.data[rep, :, :, j, k]  # (acq, coil, sample)
        traj = None
    else:
        n_read = int(h.extra["readout_length"])
        n_lines = ksp.data.shape[-1] // n_read
        j = np.tile(np.arange(n_lines), h.n_repetitions)
        k = np.zeros_like(j)
        rep = np.repeat(np.arange(h.n_repetitions), n_lines)
        lines_data = ksp.data.reshape(h.n_repetitions, h.n_coils, n_lines, n_read).transpose(0, 2, 1, 3)
        lines_data = lines_data.reshape(-1, h.n_coils, n_read)
        traj = np.asarray(ksp.coords, np.float32).reshape(n_lines, n_read * 3)
    n_acq = h.n_repetitions * n_lines
    acqs = np.zeros(n_acq, dtype=ismrmrd.hdf5.acquisition_dtype)
    head = acqs["head"]
    head["version"] = 1
    head["number_of_samples"] = n_read
    head["active_channels"] = h.n_coils
    head["available_channels"] = h.n_coils
    head["center_sample"] = n_read // 2
    head["trajectory_dimensions"] = 0 if traj is None else 3
    head["scan_counter"] = np.arange(n_acq)
    head["idx"]["kspace_encode_step_1"] = j
    head["idx"]["kspace_encode_step_2"] = k
    head["idx"]["repetition"] = rep
    head["read_dir"] = rot[:, 0] * _LPS
    head["phase_dir"] = rot[:, 1] * _LPS
    head["slice_dir"] = rot[:, 2] * _LPS
    head["position"] = np.asarray(h.position_mm) * _LPS
    lines_data = np.ascontiguousarray(lines_data, np.complex64)
    for a in range(n_acq):
        acqs[a]["data"] = lines_data[a].view(np.float32).ravel()
        acqs[a]["traj"] = np.zeros(0, np.float32) if traj is None else traj[j[a]]
    ds = ismrmrd.Dataset(path, "dataset", create_if_needed=True)
    try:
        ds.write_xml_header(_header_xml(h))
    finally:
        ds.close()
    with h5py.File(path, "a") as f:
        f["dataset"].create_dataset("data", data=acqs, maxshape=(None,), chunks=True)


def _check_global_heaps(path: str) -> None:
    """Refuse HDF5 global heap collections that libhdf5 would loop on forever.

    Variable-length fields (the XML header, acquisition data) live in global heap
    collections (HDF5 File Format Spec. III.E: ``"GCOL"``, version 1, size, then
    objects ``index(2) refcount(2) reserved(4) size(8) data``). libhdf5 (1.14) walks
    them with ``p += size`` for the free-space object (index 0), so a corrupt zero
    size never ends (found by tests/fuzz/campaign.py). Walk them as it does first.
    """
    import mmap
    import struct

    size = os.path.getsize(path)
    if size < 32:
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        at = mm.find(b"GCOL")
        while at >= 0:
            if at + 16 <= size and mm[at + 4] == 1:
                (csize,) = struct.unpack_from("<Q", mm, at + 8)
                end = at + csize
                if 4096 <= csize and end <= size:
                    pos = at + 16
                    while pos + 16 <= end:
                        index, _, _, osize = struct.unpack_from("<HHIQ", mm, pos)
                        if index == 0:
                            if osize == 0:
                                raise InputError(path, f"corrupt HDF5 global heap at byte {at} (zero-size free "
                                                 "space)", "heap")
                            step = osize
                        else:
                            step = 16 + (osize + 7) // 8 * 8
                        pos += step
            at = mm.find(b"GCOL", at + 4)


def _check_vlen_lengths(path: str, dset) -> None:
    """Refuse absurd declared lengths of variable-length members before h5py allocates them.

    On disk a vlen element is ``length(4) heap address(8) index(4)``; a corrupt
    length makes libhdf5 allocate gigabytes (found by tests/fuzz/campaign.py).
    Reads the raw (unfiltered) records and sums the lengths of every vlen member.
    The raw bytes are read from the file here, at the offsets and sizes the chunk
    index declares: h5py's ``read_direct_chunk`` lets libhdf5 write a corrupt chunk
    past the end of its buffer (heap corruption found by tests/fuzz/campaign.py).
    """

    if not isinstance(dset, h5py.Dataset):
        raise InputError(path, f"/dataset/data is a {type(dset).__name__}, not a dataset", "data")
    check_allocation(path, "data", dset.shape, dset.dtype.itemsize)  # the table h5py reads at once
    try:
        ftype = dset.id.get_type()
        if ftype.get_class() != h5py.h5t.COMPOUND or dset.id.get_create_plist().get_nfilters() > 0:
            return  # compressed chunks cannot be inspected raw; h5py reads them as usual
        members = [(ftype.get_member_offset(i), ftype.get_member_type(i).get_super().get_size())
                   for i in range(ftype.get_nmembers()) if ftype.get_member_class(i) == h5py.h5t.VLEN]
        if not members:
            return
        rec = ftype.get_size()
        if dset.chunks is None:
            offset = dset.id.get_offset()
            extents = [] if offset is None else [(offset, rec * dset.shape[0])]
        else:  # never read_direct_chunk: on a corrupt chunk index libhdf5 writes past h5py's buffer
            infos = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
            extents = [(info.byte_offset, info.size) for info in infos if info.byte_offset is not None]
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"unreadable acquisition table ({type(err).__name__}: {err})", "data") from None
    file_size = os.path.getsize(path)
    if any(start < 0 or length < 0 or start + length > file_size for start, length in extents):
        raise InputError(path, "acquisition table extends past the end of the file", "data")
    blobs = []
    with open(path, "rb") as fh:  # raw records read by Python, not by libhdf5
        for start, length in extents:
            fh.seek(start)
            blobs.append(fh.read(length))
    need = 0
    for blob in blobs:  # the little-endian uint32 length of every member of every whole record
        n_rec = len(blob) // rec
        for off, itemsize in members:
            lengths = np.ndarray((n_rec,), "<u4", blob, off, (rec,))
            need += int(lengths.sum(dtype=np.int64)) * itemsize
    check_allocation(path, "data", (need,), 1)
    if need > 64 * os.path.getsize(path) + 2**20:
        raise InputError(path, f"variable-length fields declare {need} bytes in a {os.path.getsize(path)}-byte "
                         "file (corrupt lengths)", "data")


#: readouts copied into the k-space array per block (:func:`read_ismrmrd`)
SCATTER_LINES = 4096


def read_ismrmrd(path: str | os.PathLike) -> KSpace:
    """Read a Cartesian ISMRMRD HDF5 file into :class:`KSpace` (RAS geometry)."""
    path = os.fspath(path)
    _check_global_heaps(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable HDF5/ISMRMRD file ({err})") from None
    with f:
        if "dataset" not in f or "xml" not in f["dataset"] or "data" not in f["dataset"]:
            raise InputError(path, "missing /dataset/xml or /dataset/data (not ISMRMRD)")
        try:
            xml = f["dataset/xml"][0]
        except (IndexError, KeyError, OSError, TypeError, ValueError) as err:
            raise InputError(path, f"unreadable ISMRMRD XML header ({type(err).__name__}: {err})", "xml") from None
        if not isinstance(xml, (bytes, str)):
            raise InputError(path, f"ISMRMRD XML header is a {type(xml).__name__}, not text", "xml")
        hdr = parse_header(xml, path)
        matrix, fov_mm, trajectory = hdr["matrix"], hdr["fov_mm"], hdr["trajectory"]
        if any(m < 1 for m in matrix) or any(not np.isfinite(v) or v <= 0 for v in fov_mm):
            raise InputError(path, f"absurd geometry matrix={matrix} fov_mm={fov_mm}", "encodedSpace")
        raw = f["dataset/data"]
        _check_vlen_lengths(path, raw)
        try:
            heads = raw["head"]
            datas = raw["data"]
            trajs = raw["traj"] if trajectory != "cartesian" else None  # one table read less
        except (KeyError, OSError, ValueError) as err:
            raise InputError(path, f"unreadable acquisition table ({err})", "data") from None
    n_acq = len(heads)
    if n_acq == 0:
        raise InputError(path, "file holds no acquisitions", "data")
    idx = heads["idx"]
    reps = idx["repetition"].astype(int)
    e1 = idx["kspace_encode_step_1"].astype(int)
    e2 = idx["kspace_encode_step_2"].astype(int)
    n_coils = int(heads["active_channels"][0])
    n_samples = int(heads["number_of_samples"][0])
    n_rep = int(reps.max()) + 1
    if trajectory != "cartesian":
        return _read_noncartesian(path, hdr, heads, datas, trajs, matrix, fov_mm, trajectory, n_rep, n_coils, n_samples)
    if n_samples != matrix[0]:
        raise InputError(path, f"readout has {n_samples} samples but matrix x is {matrix[0]}", "matrixSize")
    if e1.max() >= matrix[1] or e2.max() >= matrix[2]:
        raise InputError(path, "encode step beyond the encoded matrix", "encodingLimits")
    check_recon_allocation(path, "data", (n_rep, n_coils, *matrix))
    data = np.zeros((n_rep, n_coils, *matrix), np.complex64)
    filled = np.zeros((n_rep, matrix[1], matrix[2]), bool)
    sizes = np.fromiter(map(len, datas), np.int64, n_acq)  # 1-D vlen arrays
    bad = np.flatnonzero(sizes != 2 * n_coils * n_samples)
    if len(bad):
        raise InputError(path, f"acquisition {bad[0]} holds {sizes[bad[0]] // 2} samples, header says "
                         f"{n_coils}x{n_samples}", "data")
    key = (reps * matrix[1] + e1) * matrix[2] + e2
    latest = np.zeros(n_acq, bool)  # a line stored twice: the later one counts, as read line by line
    latest[n_acq - 1 - np.unique(key[::-1], return_index=True)[1]] = True
    for start in range(0, n_acq, SCATTER_LINES):  # blocks: a copy of a few MB at a time, not of the file
        blk = np.arange(start, min(start + SCATTER_LINES, n_acq))[latest[start:start + SCATTER_LINES]]
        if not len(blk):
            continue
        lines = np.concatenate(datas[blk]).astype(np.float32, copy=False).view(np.complex64)
        data[reps[blk], :, :, e1[blk], e2[blk]] = lines.reshape(len(blk), n_coils, n_samples)
    filled[reps, e1, e2] = True
    if np.any(filled != filled[:1]):
        raise InputError(path, "repetitions sample different k-space lines", "data")
    mask = None if filled.all() else filled[0]
    first = np.flatnonzero(reps == 0)
    line_order = np.full(matrix[1:], -1, int)
    line_order[e1[first], e2[first]] = np.argsort(np.argsort(heads["scan_counter"][first]))
    header = _header(hdr, heads[first[0]], matrix, fov_mm, "cartesian", n_rep, n_coils)
    header.line_order = line_order if np.all(line_order >= 0) else None
    header.extra["unsampled_lines"] = int((~filled[0]).sum())
    return KSpace(data, header, source=path, mask=mask)


def _read_noncartesian(path, hdr, heads, datas, trajs, matrix, fov_mm, trajectory, n_rep, n_coils, n_read) -> KSpace:
    reps = heads["idx"]["repetition"].astype(int)
    if np.any(heads["trajectory_dimensions"] != 3) or np.any(heads["number_of_samples"] != n_read):
        raise InputError(path, "non-Cartesian readouts need 3D trajectories of equal length", "traj")
    order = np.lexsort((heads["scan_counter"], reps))
    n_lines = int(np.sum(reps == 0))
    if len(heads) != n_rep * n_lines:
        raise InputError(path, "repetitions hold different numbers of readouts", "data")
    check_recon_allocation(path, "data", (n_rep, n_coils, n_lines * n_read))
    traj = np.stack([np.asarray(trajs[a], np.float32) for a in order[:n_lines]])
    lines = []
    for a in order:
        line = np.asarray(datas[a], dtype=np.float32)
        if line.size != 2 * n_coils * n_read:
            raise InputError(path, f"acquisition {a} holds {line.size // 2} samples, header says {n_coils}x{n_read}", "data")
        lines.append(line.view(np.complex64).reshape(n_coils, n_read))
    data = np.stack(lines).reshape(n_rep, n_lines, n_coils, n_read).transpose(0, 2, 1, 3)
    data = np.ascontiguousarray(data.reshape(n_rep, n_coils, n_lines * n_read))
    header = _header(hdr, heads[order[0]], matrix, fov_mm, trajectory, n_rep, n_coils)
    header.extra["readout_length"] = n_read
    return KSpace(data, header, source=path, coords=traj.reshape(-1, 3).astype(np.float64))


def _header(hdr, h0, matrix, fov_mm, trajectory, n_rep, n_coils) -> KSpaceHeader:
    rot = np.stack([h0["read_dir"], h0["phase_dir"], h0["slice_dir"]], axis=1) * _LPS[:, None]
    nucleus = hdr["strings"].get("nucleus", "1H")
    freq = hdr["doubles"].get("frequency_hz") or hdr["h1_hz"] * (C13_TO_H1 if nucleus == "13C" else 1.0)
    return KSpaceHeader(
        matrix=matrix,
        fov_mm=fov_mm,
        trajectory=trajectory,
        position_mm=tuple(float(v) for v in np.asarray(h0["position"]) * _LPS),
        orientation=rot if np.allclose(rot.T @ rot, np.eye(3), atol=1e-4) else np.eye(3),
        tr_ms=hdr["tr_ms"],
        te_ms=hdr["te_ms"],
        flip_angle_deg=hdr["flip_angle_deg"],
        nucleus=nucleus,
        frequency_hz=float(freq),
        n_repetitions=n_rep,
        n_coils=n_coils,
    )
