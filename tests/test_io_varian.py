"""Varian/Agilent reader on a real 13C FID (nmrglue example data, BSD-3) and a synthetic image."""

import struct
from pathlib import Path

import numpy as np
import pytest

from dualmode.io import InputError, read_kspace, read_procpar, read_varian

DATA = Path(__file__).parent / "data" / "varian_13c_1d.fid"


def test_real_13c_fid_header():
    ksp = read_kspace(DATA)  # guessed: folder with fid + procpar
    h = ksp.header
    assert h.trajectory == "spectroscopic" and h.nucleus == "13C"
    assert h.frequency_hz == pytest.approx(125.6811107e6)
    assert h.matrix == (1500, 1, 1) and ksp.data.shape == (1, 1, 1500, 1, 1)  # np = 3000 reals
    assert h.extra["sw_hz"] == 50000.0 and h.extra["dwell_s"] == pytest.approx(2e-5)
    assert h.extra["nt"] == 512 and h.extra["seqfil"] == "tancpx"
    pp = read_procpar(DATA / "procpar")
    assert pp["tn"] == "C13" and pp["dn"] == "H1" and pp["np"] == 3000.0


def test_real_13c_fid_samples_match_raw_bytes():
    """Decode the file independently of nmrglue: 32-byte header, one 28-byte block header,
    then big-endian float32 re/im pairs (VnmrJ manual, data file structure)."""
    raw = (DATA / "fid").read_bytes()
    nblocks, ntraces, npts, ebytes, tbytes, bbytes, _, status, nbh = struct.unpack(">6ihhi", raw[:32])
    assert (nblocks, ntraces, npts, ebytes, nbh) == (1, 1, 3000, 4, 1) and status & 0x8  # float data
    vals = np.frombuffer(raw, ">f4", count=npts, offset=32 + 28)
    want = vals[0::2] + 1j * vals[1::2]
    np.testing.assert_array_equal(read_varian(DATA).data[0, 0, :, 0, 0], want.astype(np.complex64))


def test_real_13c_spectrum_has_dominant_peak():
    fid = read_varian(DATA).data[0, 0, :, 0, 0]
    fid = fid * np.exp(-np.pi * 20.0 * 2e-5 * np.arange(fid.size))  # 20 Hz line broadening (procpar lb)
    spec = np.abs(np.fft.fft(fid, 8192))
    assert spec.max() > 10 * np.median(spec)  # real signal, not noise
    assert np.abs(fid[:10]).mean() > 5 * np.abs(fid[-100:]).mean()  # decaying FID


def _write_varian_image(folder: Path, traces: np.ndarray, nv: int, extra: str = "") -> None:
    """VnmrJ fid: one block per repetition, nv traces of float32 (status 0x9 = data|float)."""
    folder.mkdir()
    nblocks, ntr, n = traces.shape
    hdr = struct.pack(">6ihhi", nblocks, ntr, 2 * n, 4, 8 * n, 8 * n * ntr + 28, 0, 0x9, 1)
    body = b""
    for b in range(nblocks):
        inter = np.empty((ntr, 2 * n), ">f4")
        inter[:, 0::2], inter[:, 1::2] = traces[b].real, traces[b].imag
        body += struct.pack(">hhhhiffff", 0, 0x9, b + 1, 0, 0, 0, 0, 0, 0) + inter.tobytes()
    (folder / "fid").write_bytes(hdr + body)
    params = {"np": 2 * n, "nv": nv, "ns": 1, "sfrq": 32.1, "sw": 10000, "lro": 4.0, "lpe": 3.0, "thk": 2.0,
              "tr": 0.01, "te": 0.002, "flip1": 10.0}
    lines = []
    for k, v in params.items():
        lines += [f"{k} 1 1 1e+18 -1e+18 0 1 1 0 1 64", f"1 {v} ", "0 "]
    lines += ['tn 2 2 8 0 0 2 1 0 1 64', '1 "C13"', "0 ", 'seqfil 2 2 8 0 0 2 1 0 1 64', '1 "gems"', "0 "]
    (folder / "procpar").write_text("\n".join(lines) + extra + "\n")


def test_synthetic_varian_image(tmp_path):
    rng = np.random.default_rng(3)
    traces = (rng.standard_normal((2, 6, 8)) + 1j * rng.standard_normal((2, 6, 8))).astype(np.complex64)
    _write_varian_image(tmp_path / "img.fid", traces, nv=6)
    ksp = read_kspace(tmp_path / "img.fid")
    h = ksp.header
    assert h.matrix == (8, 6, 1) and h.n_repetitions == 2 and h.fov_mm == (40.0, 30.0, 2.0)
    assert (h.tr_ms, h.te_ms, h.flip_angle_deg, h.nucleus) == (10.0, 2.0, 10.0, "13C")
    np.testing.assert_array_equal(ksp.data[:, 0, :, :, 0], np.transpose(traces, (0, 2, 1)))


def test_varian_multislice_refused(tmp_path):
    traces = np.ones((1, 6, 8), np.complex64)
    _write_varian_image(tmp_path / "ms.fid", traces, nv=3)
    (tmp_path / "ms.fid" / "procpar").write_text(
        (tmp_path / "ms.fid" / "procpar").read_text().replace("ns 1 1", "nsx 1 1") + "ns 1 1 1e+18 -1e+18 0 1 1 0 1 64\n1 2 \n0 \n")
    with pytest.raises(InputError, match="slices") as err:
        read_varian(tmp_path / "ms.fid")
    assert err.value.field == "ns"


def test_file_inside_vendor_folder_is_recognised():
    assert read_kspace(DATA / "fid").header.matrix == (1500, 1, 1)
    assert read_kspace(DATA / "procpar").source.endswith("fid")
