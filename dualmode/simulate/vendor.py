"""Writers of vendor raw files with known content, for testing the readers.

:func:`write_bruker` writes a ParaVision experiment folder, :func:`write_twix` a Siemens
VD/VE twix file (through ``twixtools.write_twix``). They exist so that the readers in
:mod:`dualmode.io` can be checked on files whose k-space and geometry are known exactly.
"""

from __future__ import annotations

import contextlib
import io as stdio
import os

import numpy as np

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.io.bruker import _FORMATS
from dualmode.io.bruker_geometry import magnet_to_ras
from dualmode.io.jcamp import Enum, format_jcamp
from dualmode.io.twix import _LPS
from dualmode.kspace import KSpace


def write_bruker(
    folder: str | os.PathLike,
    ksp: KSpace,
    raw_format: str = "GO_32BIT_SGN_INT",
    byte_order: str = "little",
    block_format: str = "continuous",
    steps1: np.ndarray | None = None,
    version: str = "PV 6.0.1",
    slices: bool = False,
    patient_pos: str = "Head_Supine",
    method_geometry: bool = True,
) -> None:
    """Write Cartesian :class:`KSpace` as a ParaVision experiment folder, geometry included.

    Integer formats scale the data to use 90% of the integer range. ``steps1``
    (centred phase steps in acquisition order) defaults to linear order. The header's
    RAS ``orientation``/``position_mm`` become ``ACQ_grad_matrix`` and read/phase/slice
    offsets (inverse of :mod:`dualmode.io.bruker_geometry` for ``patient_pos``).
    ``slices=True`` writes the third axis as a 2D multi-slice package (``NI`` parallel
    slices, interleaved ``ACQ_obj_order``; the data's third axis is the centred DFT of
    the slice stack, as :func:`~dualmode.io.bruker.read_bruker` returns it).
    ``method_geometry=False`` leaves out the method's ``PVM_SPackArr*`` (acqp only).
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    h = ksp.header
    nr, nc, (nx, ny, nz) = h.n_repetitions, h.n_coils, h.matrix
    steps1 = np.arange(ny) - ny // 2 if steps1 is None else np.asarray(steps1)
    n_sl = nz if slices else 1
    data = ifft_centered(ksp.data, axes=(-1,)) if slices else ksp.data
    nz = 1 if slices else nz
    dim = 3 if nz > 1 else 2
    fov = np.asarray(h.fov_mm, dtype=float)
    thick = fov[2] / n_sl
    acqp, method = _bruker_params(h, dim, nx, ny, nz, nc, nr, fov, thick, raw_format, byte_order, block_format,
                                  version, patient_pos)
    method["PVM_EncSteps1"] = steps1.astype(int)
    geo_a, geo_m = _bruker_geometry(h, n_sl, thick, patient_pos)
    acqp.update(geo_a)
    if method_geometry:
        method.update(geo_m)
    for name, params in (("acqp", acqp), ("method", method)):
        with open(os.path.join(folder, name), "w", encoding="latin-1") as f:
            f.write(format_jcamp(params))
    dtype = np.dtype(("<" if byte_order == "little" else ">") + _FORMATS[raw_format])
    j = steps1 + ny // 2
    # acquisition order: (rep, slab k, phase step, NI position, coil, read)
    order = geo_a["ACQ_obj_order"]
    stack = data.reshape(nr, nc, nx, ny, nz, n_sl)[:, :, :, j][..., order]
    lines = np.transpose(stack, (0, 4, 3, 5, 1, 2))
    vals = np.stack([lines.real, lines.imag], axis=-1).reshape(nr * nz * ny * n_sl, -1)
    if dtype.kind == "i":
        peak = float(np.abs(vals).max()) or 1.0
        vals = np.round(vals * (0.9 * np.iinfo(dtype).max / peak))
    vals = vals.astype(dtype)
    if block_format == "Standard_KBlock_Format":
        pad = -(-vals.nbytes // len(vals) // 1024) * 1024 // dtype.itemsize - vals.shape[1]
        vals = np.concatenate([vals, np.zeros((len(vals), pad), dtype)], axis=1).astype(dtype)
    vals.tofile(os.path.join(folder, "fid"))


def _bruker_params(h, dim, nx, ny, nz, nc, nr, fov, thick, raw_format, byte_order, block_format, version,
                   patient_pos) -> tuple[dict, dict]:
    size = [nx, ny] + ([nz] if dim == 3 else [])
    acqp = {
        "ACQ_sw_version": version, "ACQ_method": "FLASH", "ACQ_dim": dim,
        "ACQ_size": np.array([2 * nx] + size[1:]),
        "NR": nr, "ACQ_phase_factor": 1, "NA": 1,
        "ACQ_ReceiverSelect": [Enum("Yes")] * nc,
        "GO_raw_data_format": Enum(raw_format), "BYTORDA": Enum(byte_order), "GO_block_size": Enum(block_format),
        "ACQ_word_size": Enum("_16_BIT" if raw_format == "GO_16BIT_SGN_INT" else "_32_BIT"),
        "ACQ_fov": fov[:dim] / 10.0, "ACQ_slice_thick": float(thick),
        "ACQ_flip_angle": float(h.flip_angle_deg or 10.0),
        "ACQ_repetition_time": np.array([float(h.tr_ms or 10.0)]),
        "ACQ_echo_time": np.array([float(h.te_ms or 2.0)]),
        "BF1": (h.frequency_hz or 0.0) / 1e6, "SFO1": (h.frequency_hz or 0.0) / 1e6,
        "NUC1": h.nucleus, "SW_h": 50000.0, "ACQ_patient_pos": Enum(patient_pos),
    }
    method = {
        "Method": "Bruker:FLASH", "PVM_Nucleus1": h.nucleus, "PVM_EncNReceivers": nc,
        "PVM_Matrix": np.array(size), "PVM_EncMatrix": np.array(size),
        "PVM_Fov": fov[:dim], "PVM_SliceThick": float(thick),
        "PVM_AntiAlias": np.ones(dim),
        "PVM_RepetitionTime": float(h.tr_ms or 10.0), "PVM_EchoTime": float(h.te_ms or 2.0),
        "PVM_NRepetitions": nr, "PVM_EncSteps2": np.arange(nz) - nz // 2,
    }
    return acqp, method


def _bruker_geometry(h, n_sl: int, spacing: float, patient_pos: str) -> tuple[dict, dict]:
    """acqp per-object and method per-package geometry for the header's RAS placement."""
    d_ras = magnet_to_ras(patient_pos)
    rows = (d_ras @ np.asarray(h.orientation, float)).T  # G: read, phase, slice rows in the magnet frame
    centre = rows @ d_ras @ np.asarray(h.position_mm, float)  # offsets of the voxel N//2
    along = centre[2] + (np.arange(n_sl) - n_sl // 2) * spacing  # slice offsets, object order
    order = np.r_[np.arange(0, n_sl, 2), np.arange(1, n_sl, 2)]  # interleaved acquisition
    acqp = {"NI": n_sl, "NSLICES": n_sl, "ACQ_obj_order": order,
            "ACQ_grad_matrix": np.repeat(rows[None], n_sl, axis=0),
            "ACQ_read_offset": np.full(n_sl, centre[0]), "ACQ_phase1_offset": np.full(n_sl, centre[1]),
            "ACQ_slice_offset": along[order], "ACQ_slice_sepn": np.full(max(n_sl - 1, 1), spacing)}
    method = {"PVM_NSPacks": 1, "PVM_SPackArrNSlices": np.array([n_sl]),
              "PVM_SPackArrGradOrient": rows[None], "PVM_SPackArrReadOffset": np.array([centre[0]]),
              "PVM_SPackArrPhase1Offset": np.array([centre[1]]),
              "PVM_SPackArrSliceOffset": np.array([along.mean()]),
              "PVM_SPackArrSliceDistance": np.array([spacing]), "PVM_ObjOrderList": order}
    return acqp, method


def write_twix(path: str | os.PathLike, ksp: KSpace, oversampling: int = 2) -> None:
    """Write Cartesian :class:`KSpace` as a VD/VE twix file with ``twixtools.write_twix``.

    The readout is oversampled by ``oversampling`` (k-space of the image zero-padded
    to ``oversampling`` times the FOV), so :func:`read_twix` must undo it exactly.
    Protocol: a ``MeasYaps`` ASCCONV buffer with the values :func:`read_twix` reads.
    Orientation (a proper rotation) and position are written in LPS to the MDH ``SliceData``.
    """
    import twixtools
    import twixtools.mdb as tmdb
    from twixtools.quat import directions_to_quaternion

    h = ksp.header
    nr, (nx, ny, nz) = h.n_repetitions, h.matrix
    img = ifft_centered(ksp.data, axes=(2,))
    pad = (nx * oversampling - nx) // 2
    img = np.pad(img, [(0, 0), (0, 0), (pad, nx * oversampling - nx - pad), (0, 0), (0, 0)])
    kos = fft_centered(img, axes=(2,)).astype(np.complex64)
    yaps = "\n".join([
        "### ASCCONV BEGIN ###",
        f"sKSpace.lBaseResolution = {nx}",
        f"sKSpace.lPhaseEncodingLines = {ny}",
        f"sKSpace.lPartitions = {nz}",
        f"sKSpace.ucDimension = {'0x4' if nz > 1 else '0x2'}",
        f"sSliceArray.asSlice[0].dReadoutFOV = {h.fov_mm[0]!r}",
        f"sSliceArray.asSlice[0].dPhaseFOV = {h.fov_mm[1]!r}",
        f"sSliceArray.asSlice[0].dThickness = {h.fov_mm[2]!r}",
        f"alTR[0] = {int(round((h.tr_ms or 10.0) * 1e3))}",
        f"alTE[0] = {int(round((h.te_ms or 2.0) * 1e3))}",
        f"adFlipAngleDegree[0] = {float(h.flip_angle_deg or 10.0)!r}",
        f'sTXSPEC.asNucleusInfo[0].tNucleus = "{h.nucleus}"',
        f"sTXSPEC.asNucleusInfo[0].lFrequency = {int(round(h.frequency_hz or 0))}",
        "### ASCCONV END ###", ""])
    buffers = [("Config", "<XProtocol> { }\n"), ("MeasYaps", yaps)]
    body = b"".join(name.encode() + b"\x00" + np.uint32(len(text) + 1).tobytes() + text.encode() + b"\x00"
                    for name, text in buffers)
    hdr_len = 8 + len(body)
    hdr_len += (-hdr_len) % 32
    hdr_bytes = (np.array([hdr_len, len(buffers)], "<u4").tobytes() + body).ljust(hdr_len, b"\x00")
    lps = np.asarray(h.orientation, float) * _LPS[:, None]
    quat = directions_to_quaternion(lps[:, 0], lps[:, 1], lps[:, 2])
    pos = np.asarray(h.position_mm, float) * _LPS
    mdbs = []
    for r in range(nr):
        for k in range(nz):
            for j in range(ny):
                m = tmdb.Mdb_local(kos[r, :, :, j, k])
                m.mdh.Counter.Lin, m.mdh.Counter.Par, m.mdh.Counter.Rep = j, k, r
                m.mdh.CenterLin, m.mdh.CenterPar = ny // 2, nz // 2
                m.mdh.CenterCol = nx * oversampling // 2
                m.mdh.SliceData.Quaternion[:] = tuple(float(v) for v in quat)
                m.mdh.SliceData.SlicePos.Sag, m.mdh.SliceData.SlicePos.Cor, m.mdh.SliceData.SlicePos.Tra = pos
                mdbs.append(m)
    path = os.fspath(path)
    if os.path.exists(path):
        os.remove(path)
    scan = {"hdr_str": np.frombuffer(hdr_bytes, dtype="S1"), "mdb": mdbs}
    with contextlib.redirect_stdout(stdio.StringIO()):
        twixtools.write_twix([scan], path, version_is_ve=True)


def write_varian(folder: str | os.PathLike, ksp: KSpace, seqfil: str = "gems") -> None:
    """Write single-coil Cartesian :class:`KSpace` as a VnmrJ ``.fid`` folder (``fid`` + ``procpar``).

    One block per repetition of ``nv * nv2`` float32 traces (``[nv2][nv]`` order), FOV as
    ``lro/lpe/lpe2`` (cm) or ``thk`` (mm), and the header's RAS placement as ``psi/phi/theta``
    and ``pro/ppe/pss`` (``ppe2`` for 3D): the inverse of
    :func:`dualmode.io.varian.procpar_geometry`. The orientation must be a proper rotation.
    """
    import struct

    from dualmode.io.varian import euler_rows

    h = ksp.header
    if h.n_coils != 1:
        raise ValueError("write_varian writes one receiver")
    nr, (nx, ny, nz) = h.n_repetitions, h.matrix
    rows = (np.diag([-1.0, -1.0, 1.0]) @ np.asarray(h.orientation, float)).T
    theta = np.degrees(np.arccos(np.clip(rows[2, 2], -1, 1)))
    psi = np.degrees(np.arctan2(rows[2, 1], rows[2, 0]))
    phi = np.degrees(np.arctan2(rows[1, 2], rows[0, 2]))
    if not np.allclose(euler_rows(psi, phi, theta), rows, atol=1e-9):
        raise ValueError("orientation is not a proper rotation with a tilted slice (psi/phi/theta undefined)")
    offsets = rows @ np.diag([-1.0, -1.0, 1.0]) @ np.asarray(h.position_mm, float) / 10.0  # mm -> cm
    traces = np.transpose(ksp.data[:, 0], (0, 3, 2, 1)).reshape(nr, nz * ny, nx)  # [rep][nv2][nv][np/2]
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    ntr = nz * ny
    head = struct.pack(">6ihhi", nr, ntr, 2 * nx, 4, 8 * nx, 8 * nx * ntr + 28, 0, 0x9, 1)
    with open(os.path.join(folder, "fid"), "wb") as f:
        f.write(head)
        for b in range(nr):
            inter = np.empty((ntr, 2 * nx), ">f4")
            inter[:, 0::2], inter[:, 1::2] = traces[b].real, traces[b].imag
            f.write(struct.pack(">hhhhiffff", 0, 0x9, b + 1, 0, 0, 0, 0, 0, 0) + inter.tobytes())
    real = {"np": 2 * nx, "nv": ny, "nv2": nz if nz > 1 else 0, "ns": 1, "sw": 50000.0,
            "sfrq": (h.frequency_hz or 0.0) / 1e6, "lro": h.fov_mm[0] / 10, "lpe": h.fov_mm[1] / 10,
            "tr": (h.tr_ms or 10.0) / 1e3, "te": (h.te_ms or 2.0) / 1e3, "flip1": float(h.flip_angle_deg or 10.0),
            "psi": psi, "phi": phi, "theta": theta, "pro": offsets[0], "ppe": offsets[1]}
    real.update({"lpe2": h.fov_mm[2] / 10, "ppe2": offsets[2]} if nz > 1 else {"thk": h.fov_mm[2],
                                                                              "pss": offsets[2]})
    nucleus = "".join(c for c in h.nucleus if c.isalpha()) + "".join(c for c in h.nucleus if c.isdigit())
    lines = []
    for key, val in real.items():
        lines += [f"{key} 1 1 1e+18 -1e+18 0 1 1 0 1 64", f"1 {float(val)!r} ", "0 "]
    for key, val in (("tn", nucleus), ("seqfil", seqfil), ("petable", "")):
        lines += [f"{key} 2 2 8 0 0 2 1 0 1 64", f'1 "{val}"', "0 "]
    with open(os.path.join(folder, "procpar"), "w") as f:
        f.write("\n".join(lines) + "\n")
