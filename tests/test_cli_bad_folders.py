"""A corpus of bad acquisition folders, made by hand from one simulated folder.

Each bad folder (wrong types, ranges, typos, degenerate data, contradicting signs) must give
one line naming the file and the field (or the file and the problem), the folder failed, no
traceback anywhere, and the good folders of the same batch must be unaffected.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from dualmode.batch import run_batch
from dualmode.io import KSpace, read_kspace, write_ismrmrd
from dualmode.simulate import SimulationConfig, simulate_folder

DELETE = object()
SMALL = SimulationConfig(seed=7)  # the demo folder: 64x64, registers reliably


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sim") / "good"
    simulate_folder(folder, SMALL)
    return folder


def _manifest(folder: Path, path: str, value) -> None:
    man = json.loads((folder / "acquisition.json").read_text())
    *parents, last = path.split(".")
    node = man
    for k in parents:
        node = node[k]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    (folder / "acquisition.json").write_text(json.dumps(man))


def _kspace(folder: Path, edit) -> None:
    path = folder / "mri" / "kspace.h5"
    ksp = read_kspace(path)
    data = edit(ksp.data.copy())
    write_ismrmrd(path, KSpace(data, ksp.header, ksp.source, ksp.coords, ksp.mask))


def _dropped_shot(d):
    d[2] = 0
    return d


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _header_flip(folder: Path, flip: float) -> None:
    ksp = read_kspace(folder / "mri" / "kspace.h5")
    write_ismrmrd(folder / "mri" / "kspace.h5", ksp.with_header(flip_angle_deg=flip))
    _manifest(folder, "mri.flip_angle_deg", DELETE)


def _image(folder: Path, data_yx) -> None:
    """A plain TIFF (tiny images: the OME writer would take a last axis of 3-4 for RGB)."""
    tifffile.imwrite(folder / "optics" / "small.tif", np.asarray(data_yx, np.float32), photometric="minisblack")
    _manifest(folder, "optics.image", "optics/small.tif")
    _manifest(folder, "optics.pixel_size_um", [10.0, 10.0])


def _text(folder: Path, text: str) -> None:
    (folder / "acquisition.json").write_text(text)


def M(path, value, field=None):  # noqa: N802 - a manifest edit, expected field = the edited path
    return (lambda f: _manifest(f, path, value)), "acquisition.json", field or path


ORTHO_BAD = [[1, 0, 0], [0, 0.5, 0], [0, 0, 1]]
CASES = {
    # typos: unknown keys, with a suggestion
    "typo-flipangle": (*M("mri.flipangle_deg", 5.0)[:2], "mri.flipangle_deg"),
    "typo-geometery": M("mri.geometery", {"matrix": [64, 64, 1]}),
    "typo-diameter": M("optics.particle_diameter", 200),
    "typo-optic-section": M("optic", {}),
    "typo-center": M("optics.placement.centre_mm", [0, 0, 0]),
    "typo-polarisation": M("mri.polarisation", [1, -1, 1, -1]),
    # wrong types
    "flip-text": M("mri.flip_angle_deg", "five"),
    "tr-text": M("mri.tr_ms", "10 ms"),
    "frequency-text": M("mri.frequency_hz", "75 MHz"),
    "signs-boolean": M("mri.polarization", [True, False, True, False]),
    "signs-string": M("mri.polarization", "+-+-"),
    "matrix-fractional": M("mri.geometry.matrix", [64, 64.5, 1]),
    "center-text": M("optics.placement.center_mm", "stage 3"),
    "hyperpolarized-text": M("mri.hyperpolarized", "yes"),
    "sampling-number": M("mri.sampling", 5),
    "optics-list": M("optics", ["optics/fluorescence.ome.tif"]),
    "source-text": M("mri.source", "mri/kspace.h5"),
    # ranges
    "flip-90": M("mri.flip_angle_deg", 90.0),
    "flip-negative": M("mri.flip_angle_deg", -5.0),
    "tr-zero": M("mri.tr_ms", 0),
    "fov-negative": M("mri.geometry.fov_mm", [12.8, -12.8, 1.0]),
    "diameter-zero": M("optics.particle_diameter_um", 0),
    "diameter-negative": M("optics.particle_diameter_um", -200),
    "uncertainty-negative": M("optics.placement.uncertainty_mm", -1.0),
    "orientation-not-orthonormal": M("optics.placement.orientation", ORTHO_BAD),
    "orientation-uncertainty-zero": M("optics.placement.orientation_uncertainty_deg", 0),
    "geometry-orientation-bad": M("mri.geometry.orientation", ORTHO_BAD),
    "position-two-numbers": M("mri.geometry.position_mm", [0, 0]),
    "pixel-size-one-number": M("optics.pixel_size_um", [10.0]),
    "format-version": M("format", "dualmode.acquisition/2"),
    "reader-unknown": M("mri.source.format", "philips"),
    # contradicting signs
    "signs-one-only": M("mri.polarization", [1, 1, 1, 1]),
    "signs-wrong-count": M("mri.polarization", [1, -1, 1]),
    "signs-not-unit": M("mri.polarization", [1, -1, 2, -1]),
    "matrix-mismatch": M("mri.geometry.matrix", [32, 32, 1]),
    # missing pieces
    "mri-missing": M("mri", DELETE),
    "raw-file-missing": M("mri.source.path", "mri/nothing.h5", "mri.source.path"),
    "image-missing": M("optics.image", "optics/nothing.tif", "optics.image"),
    "manifest-missing": (lambda f: (f / "acquisition.json").unlink(), "acquisition.json", None),
    # broken JSON
    "json-truncated": (lambda f: _text(f, (f / "acquisition.json").read_text()[:200]), "acquisition.json", None),
    "json-empty": (lambda f: _text(f, ""), "acquisition.json", None),
    "json-deep": (lambda f: _text(f, "[" * 100000 + "]" * 100000), "acquisition.json", None),
    "json-top-level-list": (lambda f: _text(f, "[1, 2]"), "acquisition.json", None),
    # degenerate data
    "kspace-all-zero": (lambda f: _kspace(f, np.zeros_like), "kspace.h5", "data"),
    "kspace-constant": (lambda f: _kspace(f, lambda d: np.full_like(d, 3 + 1j)), "kspace.h5", "data"),
    "kspace-dropped-shot": (lambda f: _kspace(f, _dropped_shot), "kspace.h5", "data"),
    "kspace-truncated": (lambda f: _truncate(f / "mri" / "kspace.h5"), "kspace.h5", None),
    "header-flip-90": (lambda f: _header_flip(f, 90.0), "kspace.h5", "flip_angle_deg"),
    "image-single-pixel": (lambda f: _image(f, [[5.0]]), "small.tif", "shape"),
    "image-4x4": (lambda f: _image(f, np.random.default_rng(0).random((4, 4))), "small.tif", "shape"),
    "image-constant": (lambda f: _image(f, np.full((40, 40), 7.0)), "small.tif", "data"),
}


def _make(root: Path, good: Path, name: str, edit) -> str:
    folder = root / name
    shutil.copytree(good, folder, ignore=shutil.ignore_patterns("truth*"))
    edit(folder)
    return str(folder)


def test_bad_folder_corpus(good, tmp_path):
    assert len(CASES) >= 40
    root = tmp_path / "in"
    first = _make(root, good, "a-good", lambda f: None)
    bad = {name: _make(root, good, name, edit) for name, (edit, _, _) in CASES.items()}
    last = _make(root, good, "z-good", lambda f: None)
    no_optics = _make(root, good, "no-optics", lambda f: _manifest(f, "optics", DELETE))
    summary = run_batch([first, *bad.values(), last, no_optics], tmp_path / "out", workers=1)
    entries = {e["name"]: e for e in summary["folders"]}
    for name in ("a-good", "z-good"):
        assert entries[name]["status"] == "ok", entries[name]
    assert entries["no-optics"]["status"] == "ok" and "no optics" in entries["no-optics"]["note"]
    assert (tmp_path / "out" / "no-optics" / "c13.nii.gz").exists()
    problems = []
    for name, (_, file_word, field) in CASES.items():
        e = entries[name]
        err = e.get("error") or ""
        ok = (e["status"] == "failed" and "\n" not in err and file_word in err and bad[name] in err
              and (field is None or f"[{field}]" in err) and not re.match(r"^[A-Za-z]+(Error|Exception):", err))
        log = tmp_path / "out" / name / "log.txt"
        if log.exists() and "Traceback" in log.read_text():
            ok = False
            err += " | traceback in log.txt"
        if not ok:
            problems.append(f"{name}: {e['status']}: {err}")
    assert not problems, "\n".join(problems)
    assert summary["failed"] == len(CASES) and summary["ok"] == 3


def test_swapped_polarization_is_flagged_with_its_cost(good, tmp_path):
    folder = Path(_make(tmp_path, good, "swapped", lambda f: _manifest(f, "mri.polarization", [1, -1, -1, 1])))
    entry = run_batch([str(folder)], tmp_path / "out", workers=1)["folders"][0]
    warning = " ".join(entry.get("flags", []))
    assert "acquisition.json [mri.polarization]" in warning and "contradicts the data" in warning, entry
    given, better = (float(v) for v in re.findall(r"([\d.]+) dB", warning))
    assert better > given + 10, warning
    report = json.loads((tmp_path / "out" / "swapped" / "report.json").read_text())
    assert report["signflip"]["polarization_check"]["data_signs"] == [1, -1, 1, -1]


def test_run_vv_shows_dualmode_lines_and_no_third_party_debug(good, tmp_path):
    out = subprocess.run([sys.executable, "-m", "dualmode", "run", "-vv", str(good), "-o", str(tmp_path / "o"),
                          "-j", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    assert any(line.startswith(("DEBUG dualmode", "INFO dualmode")) for line in lines), out.stderr[-3000:]
    third = [line for line in lines if re.match(r"^(DEBUG|INFO) (?!dualmode)", line)]
    assert not third, third[:5]
