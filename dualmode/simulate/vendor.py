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
) -> None:
    """Write Cartesian :class:`KSpace` as a ParaVision experiment folder (single slice/3D).

    Integer formats scale the data to use 90% of the integer range. ``steps1``
    (centred phase steps in acquisition order) defaults to the header's
    ``line_order`` or linear order. Used to test :func:`read_bruker` with known data.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    h = ksp.header
    nr, nc, (nx, ny, nz) = h.n_repetitions, h.n_coils, h.matrix
    if steps1 is None:
        steps1 = np.arange(ny) - ny // 2
    steps1 = np.asarray(steps1)
    dim = 3 if nz > 1 else 2
    fov = np.asarray(h.fov_mm, dtype=float)
    acqp = {
        "ACQ_sw_version": version, "ACQ_method": "FLASH", "ACQ_dim": dim,
        "ACQ_size": np.array([2 * nx, ny] + ([nz] if dim == 3 else [])),
        "NI": 1, "NR": nr, "ACQ_phase_factor": 1, "NA": 1,
        "ACQ_ReceiverSelect": [Enum("Yes")] * nc,
        "GO_raw_data_format": Enum(raw_format), "BYTORDA": Enum(byte_order), "GO_block_size": Enum(block_format),
        "ACQ_word_size": Enum("_16_BIT" if raw_format == "GO_16BIT_SGN_INT" else "_32_BIT"),
        "ACQ_fov": fov[:dim] / 10.0, "ACQ_slice_thick": float(fov[2]),
        "ACQ_flip_angle": float(h.flip_angle_deg or 10.0),
        "ACQ_repetition_time": np.array([float(h.tr_ms or 10.0)]),
        "ACQ_echo_time": np.array([float(h.te_ms or 2.0)]),
        "BF1": (h.frequency_hz or 0.0) / 1e6, "SFO1": (h.frequency_hz or 0.0) / 1e6,
        "NUC1": h.nucleus, "SW_h": 50000.0, "ACQ_patient_pos": Enum("Head_Supine"),
    }
    method = {
        "Method": "Bruker:FLASH", "PVM_Nucleus1": h.nucleus, "PVM_EncNReceivers": nc,
        "PVM_Matrix": np.array([nx, ny] + ([nz] if dim == 3 else [])),
        "PVM_EncMatrix": np.array([nx, ny] + ([nz] if dim == 3 else [])),
        "PVM_Fov": fov[:dim], "PVM_SliceThick": float(fov[2]),
        "PVM_AntiAlias": np.ones(dim),
        "PVM_RepetitionTime": float(h.tr_ms or 10.0), "PVM_EchoTime": float(h.te_ms or 2.0),
        "PVM_NRepetitions": nr, "PVM_EncSteps1": steps1.astype(int),
        "PVM_EncSteps2": np.arange(nz) - nz // 2,
    }
    for name, params in (("acqp", acqp), ("method", method)):
        with open(os.path.join(folder, name), "w", encoding="latin-1") as f:
            f.write(format_jcamp(params))
    dtype = np.dtype(("<" if byte_order == "little" else ">") + _FORMATS[raw_format])
    j = steps1 + ny // 2
    # acquisition order: (rep, slab k, phase step, coil, read)
    lines = np.transpose(ksp.data[:, :, :, j, :], (0, 4, 3, 1, 2))
    vals = np.stack([lines.real, lines.imag], axis=-1).reshape(nr * nz * ny, -1)
    if dtype.kind == "i":
        peak = float(np.abs(vals).max()) or 1.0
        vals = np.round(vals * (0.9 * np.iinfo(dtype).max / peak))
    vals = vals.astype(dtype)
    if block_format == "Standard_KBlock_Format":
        pad = -(-vals.nbytes // len(vals) // 1024) * 1024 // dtype.itemsize - vals.shape[1]
        vals = np.concatenate([vals, np.zeros((len(vals), pad), dtype)], axis=1).astype(dtype)
    vals.tofile(os.path.join(folder, "fid"))


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
