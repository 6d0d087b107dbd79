"""``dualmode import``: a Bruker experiment (written by our writer with known geometry) plus a
microscope image becomes an acquisition folder that ``dualmode info`` explains and
``dualmode run`` processes; bad input is refused before anything is written."""

import json
from pathlib import Path

import numpy as np
import pytest

from dualmode.cli import main
from dualmode.io import InputError, load_acquisition, read_kspace
from dualmode.simulate import SimulationConfig, simulate_folder, write_bruker

REAL_IMAGE = Path(__file__).resolve().parent / "data" / "stardist" / "img2d.tif"  # real fluorescence, BSD-3


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    """A simulated acquisition whose k-space is rewritten as a ParaVision experiment ``study/5``."""
    root = tmp_path_factory.mktemp("scanner")
    simulate_folder(root / "sim", SimulationConfig(seed=7))
    man = json.loads((root / "sim" / "acquisition.json").read_text())
    ksp = read_kspace(root / "sim" / man["mri"]["source"]["path"])
    write_bruker(root / "study" / "5", ksp, "GO_32BIT_FLOAT")
    return root, ksp, man


def test_import_then_info_then_run(scanner, tmp_path, capsys):
    root, ksp, man = scanner
    dest = tmp_path / "acq"
    optical = root / "sim" / man["optics"]["image"]
    assert main(["import", str(root / "study" / "5"), str(optical), str(dest), "--scheme", "+-"]) == 0
    written = json.loads((dest / "acquisition.json").read_text())
    assert written["mri"]["polarization"] == man["mri"]["polarization"]
    assert written["mri"]["source"]["path"] == "../" + str((root / "study" / "5").relative_to(tmp_path.parent)) \
        or Path(dest, written["mri"]["source"]["path"]).resolve() == (root / "study" / "5").resolve()
    acq = load_acquisition(dest)
    np.testing.assert_allclose(acq.kspace.header.affine(), ksp.header.affine(), atol=1e-5)  # no mri.geometry
    assert "geometry" not in written["mri"] and acq.kspace.header.flip_angle_deg == ksp.header.flip_angle_deg
    capsys.readouterr()
    assert main(["info", str(dest)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sources"]["orientation"].startswith("method (PVM_SPackArr*)")
    assert info["sources"]["fov_mm"] == "method PVM_Fov x PVM_AntiAlias"
    assert info["sources"]["hyperpolarized"] == "manifest mri.hyperpolarized"
    out = tmp_path / "out"
    assert main(["run", str(dest), "--out", str(out)]) == 0
    report = json.loads((out / "acq" / "report.json").read_text())
    assert "error" not in report["registration"] and report["registration"]["matched"] >= 6, report["registration"]


def test_import_copy_and_real_microscope_image(scanner, tmp_path):
    """A real fluorescence image (no pixel size in the file: given on the command line), copied in."""
    root, ksp, _ = scanner
    dest = tmp_path / "acq"
    rc = main(["import", str(root / "study" / "5"), str(REAL_IMAGE), str(dest), "--polarization", "+-+-",
               "--copy", "--optical-pixel-size", "10", "10"])
    assert rc == 0
    assert (dest / "mri" / "5" / "fid").is_file() and (dest / "optics" / "img2d.tif").is_file()
    acq = load_acquisition(dest)
    assert acq.optics.data.shape[:2] == (512, 512) and list(acq.optics.spacing_um[:2]) == [10.0, 10.0]
    assert main(["run", str(dest), "--out", str(tmp_path / "out")]) in (0, 1)
    assert (tmp_path / "out" / "acq" / "report.json").is_file()  # processed; registration judged on its own


def test_import_refuses_before_writing(scanner, tmp_path):
    root, ksp, man = scanner
    optical = root / "sim" / man["optics"]["image"]
    dest = tmp_path / "acq"
    with pytest.raises(InputError, match="repetitions"):
        from dualmode.importer import import_acquisition

        import_acquisition(root / "study" / "5", optical, dest, polarization="+-+")
    assert not dest.exists()
    # a 90 degree hyperpolarized scan: refused naming the field, nothing left behind
    hot = ksp.with_header(flip_angle_deg=90.0)
    write_bruker(tmp_path / "study90", hot, "GO_32BIT_FLOAT")
    assert main(["import", str(tmp_path / "study90"), str(optical), str(dest), "--scheme", "+-"]) == 1
    assert not dest.exists() and not list(tmp_path.glob(".acq.*"))
    with pytest.raises(InputError, match="mri.flip_angle_deg"):
        from dualmode.importer import import_acquisition

        import_acquisition(tmp_path / "study90", optical, dest, scheme="+-")
    # thermal data at 90 degrees are fine
    import_acquisition(tmp_path / "study90", optical, dest, scheme="+-", hyperpolarized=False)
    assert load_acquisition(dest).hyperpolarized is False
