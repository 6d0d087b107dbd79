"""Bruker ParaVision reader: synthetic experiments with known k-space, and real PV5/PV360
parameter files from brkraw's test fixtures (GPL-3, so fetched at test time, never committed).

The brkraw sdist is fetched once with ``pip download`` into ``~/.cache/dualmode-test-data``
(or ``$DUALMODE_TEST_DATA``); without PyPI access these tests fail loudly, they never skip.
"""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dualmode.io import InputError, KSpace, KSpaceHeader, read_bruker, read_jcamp, read_kspace
from dualmode.simulate import write_bruker
from dualmode.io.bruker import bruker_header

BRKRAW = "brkraw==0.5.7"
FIXTURES = "brkraw-0.5.7/tests/test_01_core/fixtures"


@pytest.fixture(scope="session")
def brkraw_fixtures() -> Path:
    """Real ParaVision acqp/method files (brkraw 0.5.7 sdist), cached across runs."""
    cache = Path(os.environ.get("DUALMODE_TEST_DATA", Path.home() / ".cache" / "dualmode-test-data"))
    out = cache / FIXTURES
    if not (out / "method_FLASH_pv360_3_1.jdx").exists():
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "-q", "-d", str(cache), BRKRAW], capture_output=True, text=True, timeout=300)
        sdists = sorted(cache.glob("brkraw-0.5.7.tar.gz"))
        if not sdists:
            pytest.fail(f"could not download {BRKRAW} for its ParaVision fixtures: {proc.stderr[-500:]}")
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(FIXTURES) and m.isfile()]
            tar.extractall(cache, members=members, filter="data")
    return out


def _ksp(shape, **kw):
    rng = np.random.default_rng(sum(shape))
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    hdr = dict(matrix=shape[2:], fov_mm=(40.0, 30.0, 2.0), tr_ms=12.0, te_ms=1.5, flip_angle_deg=8.0,
               nucleus="13C", frequency_hz=75.4655e6, n_repetitions=shape[0], n_coils=shape[1])
    hdr.update(kw)
    return KSpace(data, KSpaceHeader(**hdr))


def _rel_err(got, want):
    scale = np.vdot(got, want) / np.vdot(got, got)  # integer formats are scaled on write
    return float(np.abs(got * scale - want).max() / np.abs(want).max())


@pytest.mark.parametrize("raw_format", ["GO_16BIT_SGN_INT", "GO_32BIT_SGN_INT", "GO_32BIT_FLOAT", "GO_64BIT_FLOAT"])
@pytest.mark.parametrize("byte_order", ["little", "big"])
@pytest.mark.parametrize("block", ["continuous", "Standard_KBlock_Format"])
def test_synthetic_round_trip_every_word_format(tmp_path, raw_format, byte_order, block):
    ksp = _ksp((3, 2, 20, 12, 1))
    steps = np.random.default_rng(1).permutation(12) - 6  # scrambled acquisition order
    write_bruker(tmp_path, ksp, raw_format, byte_order, block, steps1=steps)
    if block == "Standard_KBlock_Format":  # 20 samples x 2 coils x re/im: padded to 1 KiB per block
        assert os.path.getsize(tmp_path / "fid") == 3 * 12 * 1024
    got = read_kspace(tmp_path)  # format guessed from the folder content
    assert got.header.matrix == (20, 12, 1) and got.header.n_repetitions == 3 and got.header.n_coils == 2
    assert _rel_err(got.data, ksp.data) < (1e-4 if raw_format == "GO_16BIT_SGN_INT" else 1e-6)
    # line_order: the t-th acquired line sits at k index steps[t] + N/2
    np.testing.assert_array_equal(got.header.line_order[steps + 6, 0], np.arange(12))
    h = got.header
    assert (h.fov_mm, h.tr_ms, h.te_ms, h.flip_angle_deg, h.nucleus) == ((40.0, 30.0, 2.0), 12.0, 1.5, 8.0, "13C")
    assert h.frequency_hz == pytest.approx(75.4655e6)


def test_3d_round_trip_and_image(tmp_path):
    from dualmode.conventions import fft_centered, ifft_centered

    img = np.zeros((8, 6, 4), np.complex64)
    img[5, 2, 3] = 1.0  # a point at a known voxel
    k = fft_centered(img)[None, None].astype(np.complex64)
    ksp = KSpace(k, KSpaceHeader(matrix=(8, 6, 4), fov_mm=(16.0, 12.0, 8.0)))
    write_bruker(tmp_path, ksp, "GO_32BIT_FLOAT")
    got = read_bruker(tmp_path / "fid")  # the fid path works as well as the folder
    back = np.abs(ifft_centered(got.data[0, 0]))
    assert np.unravel_index(np.argmax(back), back.shape) == (5, 2, 3)
    assert got.header.fov_mm == (16.0, 12.0, 8.0)


def test_real_pv5_epi_parameters(brkraw_fixtures, tmp_path):
    acqp = read_jcamp(brkraw_fixtures / "acqp_EPI_pv5_1.jdx")
    method = read_jcamp(brkraw_fixtures / "method_EPI_pv5_1.jdx")
    assert acqp["ACQ_sw_version"] == "PV 5.1" and acqp["NUC1"] == "1H"
    assert acqp["BF1"] == pytest.approx(400.327592465446) and acqp["SW_h"] == 150000
    assert acqp["ACQ_flip_angle"] == pytest.approx(68.4) and acqp["NI"] == 32 and acqp["NR"] == 1
    assert acqp["GO_raw_data_format"] == "GO_32BIT_SGN_INT" and acqp["BYTORDA"] == "little"
    np.testing.assert_array_equal(acqp["ACQ_size"], [7344, 1])
    np.testing.assert_allclose(acqp["ACQ_fov"], [2.88, 2.88])
    assert acqp["ACQ_grad_matrix"].shape == (32, 3, 3)
    assert acqp["ACQ_ReceiverSelect"] == ["Yes"] * 4
    assert method["Method"] == "EPI" and method["PVM_EncNReceivers"] == 4
    np.testing.assert_array_equal(method["PVM_Matrix"], [72, 72])
    np.testing.assert_array_equal(method["PVM_EncSteps1"], np.arange(-15, 36))  # partial Fourier
    # an EPI echo train is one 3672-sample readout: refused with a clear message
    with pytest.raises(InputError, match="EPI") as err:
        bruker_header(acqp, method, str(tmp_path))
    assert err.value.field == "ACQ_size"


def test_real_pv360_flash_method_drives_the_reader(brkraw_fixtures, tmp_path):
    """PV 360 FLASH method (256^2 after 2x zero fill, 128 acquired lines) with a
    synthetic acqp/fid: the grid, FOV, timing and line placement come from the real file."""
    method = read_jcamp(brkraw_fixtures / "method_FLASH_pv360_3_1.jdx")
    assert method["Method"] == "Bruker:FLASH" and method["PVM_Nucleus1"] == "1H"
    assert (method["PVM_RepetitionTime"], method["PVM_EchoTime"]) == (50, 2.3)
    np.testing.assert_array_equal(method["PVM_EncGenSteps2"], np.zeros(128))  # @128*(0)
    assert method["PVM_SPackArrSliceOrient"] == ["axial", "sagittal", "coronal"]
    ksp = _ksp((1, 1, 128, 128, 1), fov_mm=(40.0, 40.0, 1.0))
    write_bruker(tmp_path, ksp, "GO_32BIT_FLOAT")
    shutil.copy(brkraw_fixtures / "method_FLASH_pv360_3_1.jdx", tmp_path / "method")
    got = read_bruker(tmp_path)
    h = got.header
    assert h.matrix == (128, 128, 1) and h.fov_mm == (40.0, 40.0, 1.0)
    assert (h.tr_ms, h.te_ms, h.nucleus) == (50.0, 2.3, "1H")
    assert _rel_err(got.data, ksp.data) < 1e-6  # EncSteps1 is linear -64..63


def test_spectroscopic_fid_series(tmp_path):
    """1D spectroscopy (ACQ_dim 1, 'Spectroscopic'): NR FIDs of a known 13C line at +1 kHz."""
    from dualmode.io.jcamp import Enum, format_jcamp

    n, nr, sw = 256, 4, 5000.0
    t = np.arange(n) / sw
    fids = np.exp(2j * np.pi * 1000.0 * t - t / 0.05)[None, :] * np.array([1.0, -1.0, 0.8, -0.8])[:, None]
    acqp = {"ACQ_dim": 1, "ACQ_dim_desc": [Enum("Spectroscopic")], "ACQ_size": np.array([2 * n]), "NR": nr,
            "NI": 1, "GO_raw_data_format": Enum("GO_32BIT_FLOAT"), "BYTORDA": Enum("little"),
            "SW_h": sw, "SFO1": 75.4655, "NUC1": "13C", "ACQ_flip_angle": 5.0}
    (tmp_path / "acqp").write_text(format_jcamp(acqp))
    (tmp_path / "method").write_text(format_jcamp({"Method": "Bruker:SINGLEPULSE", "PVM_RepetitionTime": 1000.0}))
    np.stack([fids.real, fids.imag], -1).astype("<f4").tofile(tmp_path / "fid")
    got = read_kspace(tmp_path)
    h = got.header
    assert h.trajectory == "spectroscopic" and h.matrix == (n, 1, 1) and h.n_repetitions == nr
    assert (h.nucleus, h.flip_angle_deg, h.tr_ms, h.extra["dwell_s"]) == ("13C", 5.0, 1000.0, 1 / sw)
    np.testing.assert_allclose(got.data[:, 0, :, 0, 0], fids, atol=1e-6)
    spec = np.fft.fftshift(np.fft.fft(got.data[0, 0, :, 0, 0]))
    freq = np.fft.fftshift(np.fft.fftfreq(n, 1 / sw))
    assert freq[np.argmax(np.abs(spec))] == pytest.approx(1000.0, abs=sw / n)


def test_pv360_rawdata_job0_and_word_size_fallback(tmp_path):
    """PV 360 names the raw file rawdata.job0; without GO_raw_data_format, ACQ_word_size decides."""
    ksp = _ksp((1, 1, 8, 6, 1))
    write_bruker(tmp_path, ksp, "GO_16BIT_SGN_INT")
    os.rename(tmp_path / "fid", tmp_path / "rawdata.job0")
    text = (tmp_path / "acqp").read_text()
    (tmp_path / "acqp").write_text(text.replace("##$GO_raw_data_format=GO_16BIT_SGN_INT\n", ""))
    assert "GO_raw_data_format" not in (tmp_path / "acqp").read_text() and "ACQ_word_size=_16_BIT" in text
    got = read_kspace(tmp_path)
    assert got.source.endswith("rawdata.job0") and _rel_err(got.data, ksp.data) < 1e-4
