"""Siemens twix reader: synthetic files written with twixtools' own ``write_twix`` (VD/VE
layout, MDH per readout) from known k-space, and the real ``gre.dat``/``epi.dat`` of the
twixtools 0.24 source archive (MIT), fetched from PyPI once into
``~/.cache/dualmode-test-data`` (or ``$DUALMODE_TEST_DATA``); without PyPI they fail, never skip."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dualmode.conventions import fft_centered, ifft_centered
from dualmode.io import InputError, KSpace, KSpaceHeader, read_kspace, read_twix, remove_readout_oversampling
from dualmode.simulate import write_twix

TWIXTOOLS = "twixtools==0.24"
EXAMPLES = "twixtools-0.24/example_data"


@pytest.fixture(scope="session")
def twix_examples() -> Path:
    """Real Siemens ``gre.dat`` and ``epi.dat`` from the twixtools 0.24 sdist, cached across runs."""
    cache = Path(os.environ.get("DUALMODE_TEST_DATA", Path.home() / ".cache" / "dualmode-test-data"))
    out = cache / EXAMPLES
    if not (out / "epi.dat").exists():
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "-q", "-d", str(cache), TWIXTOOLS], capture_output=True, text=True, timeout=300)
        sdists = sorted(cache.glob("twixtools-0.24.tar.gz"))
        if not sdists:
            pytest.fail(f"could not download {TWIXTOOLS} for its example data: {proc.stderr[-500:]}")
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(EXAMPLES) and m.isfile()]
            tar.extractall(cache, members=members, filter="data")
    return out


def _read_cfl(base: Path) -> np.ndarray:
    """BART .cfl/.hdr (complex64, column-major), written out here, not BART's python helper."""
    dims = [int(v) for v in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


def _bart(*args, cwd):
    if shutil.which("bart") is None:
        pytest.fail("BART is not installed (Debian package 'bart'; .ci/run installs it)")
    subprocess.run(["bart", *map(str, args)], check=True, capture_output=True, cwd=cwd, timeout=120)


def test_real_epi_is_refused_naming_the_flags(twix_examples):
    with pytest.raises(InputError) as err:
        read_kspace(twix_examples / "epi.dat")
    msg = str(err.value)
    for flag in ("lEPIFactor = 128", "REFLECT", "PHASCOR", "alRegridMode = 2"):
        assert flag in msg, msg


def test_real_gre_thermal_equals_bart(twix_examples, tmp_path):
    """gre.dat (thermal 1H) through the library with hyperpolarized=False equals BART's
    ``twixread -A``, ``fft -i 7``, ``rss 8`` (readout oversampling cropped) to 1e-3."""
    from dualmode.recon.cartesian import reconstruct_repetitions

    _bart("twixread", "-A", twix_examples / "gre.dat", "k", cwd=tmp_path)
    _bart("fft", "-i", 7, "k", "img", cwd=tmp_path)
    _bart("rss", 8, "img", "rss", cwd=tmp_path)
    ref = np.abs(_read_cfl(tmp_path / "rss")).squeeze()  # (320 oversampled read, 160 phase)
    ref = ref[80:240] / ref.size  # the central half is the 160-pixel FOV; BART's inverse FFT is unscaled
    ksp = read_twix(twix_examples / "gre.dat")
    assert ksp.header.matrix == (160, 160, 1) and ksp.header.n_coils == 2
    got = np.abs(reconstruct_repetitions(ksp, hyperpolarized=False, coil_combine="rss"))[0, :, :, 0]
    assert np.abs(got - ref).max() / ref.max() < 1e-3
    # the RF-depletion model does not belong on thermal data: it visibly changes the image
    hp = np.abs(reconstruct_repetitions(ksp, hyperpolarized=True, coil_combine="rss"))[0, :, :, 0]
    assert np.corrcoef(hp.ravel(), ref.ravel())[0, 1] < 0.95 < np.corrcoef(got.ravel(), ref.ravel())[0, 1]


def test_real_gre_geometry_from_the_mdh(twix_examples):
    h = read_twix(twix_examples / "gre.dat").header
    assert h.extra["geometry_source"].startswith("MDH SliceData")
    np.testing.assert_allclose(h.orientation.T @ h.orientation, np.eye(3), atol=1e-6)


def test_oversampling_removal_keeps_the_central_half_of_the_image():
    """Ground truth: an image on a 2x readout FOV whose central half is known."""
    rng = np.random.default_rng(0)
    inner = rng.standard_normal((16, 5)) + 1j * rng.standard_normal((16, 5))
    wide = np.zeros((32, 5), complex)
    wide[8:24] = inner  # central half of a 32-pixel FOV (index 16 = x 0 in both grids)
    k_os = fft_centered(wide, axes=(0,))
    k = remove_readout_oversampling(k_os, 2, axis=0)
    assert k.shape == (16, 5)
    np.testing.assert_allclose(ifft_centered(k, axes=(0,)), inner, atol=1e-12)


def test_oversampling_removal_odd_factor():
    wide = np.zeros(30, complex)
    wide[10:20] = np.arange(10)
    k = remove_readout_oversampling(fft_centered(wide, axes=(0,)), 3, axis=0)
    np.testing.assert_allclose(ifft_centered(k, axes=(0,)).real, np.arange(10), atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 16, 12, 1), (1, 2, 8, 6, 4)])
def test_synthetic_twix_round_trip(tmp_path, shape):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    rot = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    hdr = KSpaceHeader(matrix=shape[2:], fov_mm=(40.0, 30.0, 2.0), position_mm=(1.0, -2.0, 3.0), orientation=rot,
                       tr_ms=12.0, te_ms=1.5, flip_angle_deg=8.0, nucleus="13C", frequency_hz=32.1e6,
                       n_repetitions=shape[0], n_coils=shape[1])
    path = tmp_path / "meas_MID00042_FID00001_csi.dat"
    write_twix(path, KSpace(data, hdr), oversampling=2)
    got = read_kspace(path)  # .dat -> twix
    h = got.header
    assert got.data.shape == shape and h.extra["readout_oversampling"] == 2
    np.testing.assert_allclose(got.data, data, atol=1e-5)
    np.testing.assert_allclose(h.orientation, rot, atol=1e-6)
    np.testing.assert_allclose(h.position_mm, (1.0, -2.0, 3.0), atol=1e-5)
    assert (h.fov_mm, h.tr_ms, h.te_ms, h.flip_angle_deg, h.nucleus) == ((40.0, 30.0, 2.0), 12.0, 1.5, 8.0, "13C")
    assert h.frequency_hz == 32.1e6
    assert h.line_order is not None and h.line_order[3, 0] == 3  # lines written in linear order
