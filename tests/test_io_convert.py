"""convert_to_ismrmrd: vendor formats -> ISMRMRD, read back identical."""

from pathlib import Path

import numpy as np
import pytest

from dualmode.io import InputError, KSpace, KSpaceHeader, convert_to_ismrmrd, read_ismrmrd
from dualmode.simulate import write_bruker, write_twix


def _ksp():
    rng = np.random.default_rng(2)
    data = (rng.standard_normal((2, 2, 8, 6, 1)) + 1j * rng.standard_normal((2, 2, 8, 6, 1))).astype(np.complex64)
    return KSpace(data, KSpaceHeader(matrix=(8, 6, 1), fov_mm=(16.0, 12.0, 3.0), tr_ms=5.0, te_ms=1.0,
                                     flip_angle_deg=7.0, nucleus="13C", frequency_hz=75.4e6,
                                     n_repetitions=2, n_coils=2))


@pytest.mark.parametrize("fmt", ["bruker", "twix"])
def test_convert_vendor_to_ismrmrd(tmp_path, fmt):
    src = tmp_path / ("exp" if fmt == "bruker" else "meas.dat")
    (write_bruker(src, _ksp(), "GO_32BIT_FLOAT") if fmt == "bruker" else write_twix(src, _ksp()))
    written = convert_to_ismrmrd(src, tmp_path / "out.h5")
    back = read_ismrmrd(tmp_path / "out.h5")
    np.testing.assert_allclose(back.data, written.data, atol=1e-6)
    np.testing.assert_allclose(back.data, _ksp().data, atol=1e-5)
    h = back.header
    assert (h.matrix, h.fov_mm, h.n_repetitions, h.n_coils, h.nucleus) == ((8, 6, 1), (16.0, 12.0, 3.0), 2, 2, "13C")
    assert (h.tr_ms, h.te_ms, h.flip_angle_deg) == (5.0, 1.0, 7.0)
    assert h.frequency_hz == pytest.approx(75.4e6)


def test_convert_refuses_spectroscopic_fid(tmp_path):
    src = Path(__file__).parent / "data" / "varian_13c_1d.fid"
    with pytest.raises(InputError, match="spectroscopic"):
        convert_to_ismrmrd(src, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_cli_convert(tmp_path, capsys):
    from dualmode.cli import main

    write_bruker(tmp_path / "exp", _ksp(), "GO_16BIT_SGN_INT")
    assert main(["convert", str(tmp_path / "exp"), str(tmp_path / "o.h5")]) == 0
    assert "matrix [8, 6, 1]" in capsys.readouterr().out
    back = read_ismrmrd(tmp_path / "o.h5")
    assert back.header.n_repetitions == 2 and back.header.nucleus == "13C"
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "p.h5")]) == 1
    assert "file not found" in capsys.readouterr().err
