"""The command line as a user meets it: usage errors, global flags, help, lazy imports, safe simulate."""

import dataclasses
import json
import logging
import os
import subprocess
import sys

import pytest

from dualmode.batch import expand_folders
from dualmode.cli import build_parser, main
from dualmode.cli_types import EXAMPLES, READER_NAMES

USAGE_ERRORS = [  # (argv, words in the one-line error)
    (["simulate", "x", "--trajectory", "spirall"], "invalid choice: 'spirall'"),
    (["simulate", "x", "--scheme", "+-x"], "argument --scheme"),
    (["simulate", "x", "--scheme", "++"], "both signs"),
    (["simulate", "x", "--snr", "-1"], "snr must be > 0"),
    (["simulate", "x", "--matrix", "6.5"], "an integer expected"),
    (["simulate", "x", "--ndim", "4"], "invalid choice"),
    (["simulate", "x", "--diameter-um", "0", "200"], "diameter_um must be > 0"),
    (["simulate", "x", "--flip-angle-deg", "90"], "flip_angle_deg must be < 90"),
    (["simulate", "x", "--tr-ms", "nan"], "finite"),
    (["run", ".", "--fused-grid", "bogus"], "'mri', 'optical' or a spacing"),
    (["run", ".", "--fused-grid", "-1"], "positive"),
    (["run", ".", "--optical-pixel-size", "10"], "expected 2 or 3 values, got 1"),
    (["run", ".", "--optical-pixel-size", "10", "0"], "must be > 0"),
    (["run", ".", "-j", "0"], "must be >= 1"),
    (["run", ".", "-j", "two"], "an integer expected"),
    (["run", ".", "--scheduler", "tcp//host"], "host:port"),
    (["run", ".", "--scheduler", "tcp://host:99999"], "host:port"),
    (["run", ".", "--scheduler", "htp://host:8786"], "unknown protocol 'htp'"),
    (["run", "no-such-folder", "-o", "out"], "no such folder: no-such-folder"),
    (["run", "nomatch*", "-o", "out"], "no such folder: nomatch*"),
    (["info", "no-such-folder"], "no such folder"),
    (["run", ".", "-q", "--json"], "exclude each other"),
    (["-q", "run", ".", "--json"], "exclude each other"),
    (["convert", "a", "b", "--format", "dicom"], "invalid choice: 'dicom'"),
    (["demo", "--seed", "-3"], "seed must be >= 0"),
    (["run"], "required"),
]


@pytest.mark.parametrize("argv, words", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_rc2_with_subcommand_usage(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"usage: dualmode {argv[0] if argv[0] != '-q' else 'run'}"), err
    assert words in lines[-1] and lines[-1].startswith("dualmode "), err
    assert os.listdir(tmp_path) == []  # nothing ran, nothing written


@pytest.mark.parametrize("argv", [["-v", "-v", "--json", "info", "X"], ["info", "X", "-vv", "--json"],
                                  ["-v", "info", "-v", "X", "--json"]])
def test_global_flags_before_or_after_subcommand(tmp_path, argv):
    folder = tmp_path / "X"
    folder.mkdir()
    args = build_parser().parse_args([str(folder) if a == "X" else a for a in argv])
    from dualmode.cli import _merge_common

    _merge_common(args)
    assert (args.verbose, args.json, args.quiet) == (2, True, False)


def test_vv_configures_only_the_dualmode_logger(tmp_path, capsys):
    (tmp_path / "X").mkdir()
    assert main(["info", str(tmp_path / "X"), "-vv"]) == 1  # invalid folder: still configures logging
    assert logging.getLogger("dualmode").getEffectiveLevel() == logging.DEBUG
    for name in ("matplotlib", "h5py", "numcodecs", "asyncio", "distributed.worker"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("dualmode.test").debug("dualmode stage line")
    logging.getLogger("matplotlib").warning("a third-party warning")
    logging.getLogger("matplotlib.font_manager").info("third-party info")
    err = capsys.readouterr().err
    assert "dualmode stage line" in err and "a third-party warning" in err and "third-party info" not in err
    assert "INVALID" in err and "acquisition.json" in err  # failures on stderr


def test_literal_paths_that_exist_are_never_globbed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("scan[1]", "scan1", "a*b", "axb"):
        (tmp_path / name).mkdir()
    assert expand_folders(["scan[1]", "a*b"]) == ["scan[1]", "a*b"]
    assert expand_folders(["scan[12]"]) == ["scan1"]  # a pattern when no such folder exists
    assert expand_folders(["sc*"]) == ["scan1", "scan[1]"]


def test_parser_imports_no_science_package():
    code = ("import sys; from dualmode.cli import main\n"
            "for argv in (['--help'], ['--version'], ['run', '--help'], ['simulate', '--help']):\n"
            "    assert main(argv) == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy', 'numba', 'pydantic',"
            " 'h5py', 'SimpleITK', 'dask') or m.startswith(('dualmode.recon', 'dualmode.io', 'dualmode.registration')))\n"
            "print(heavy, file=sys.stderr); assert not heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_help_has_meaning_units_and_examples(capsys):
    from dualmode.simulate.config import SimulationConfig

    for f in dataclasses.fields(SimulationConfig):
        if f.name != "extra":
            assert len(f.metadata.get("help", "")) > 12, f"SimulationConfig.{f.name} has no help text"
    assert main(["simulate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(SimulationConfig):
        if f.name != "extra":
            assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "[mm]" in text and "[µm]" in text and "[degrees]" in text and "[ms]" in text
    for command in EXAMPLES:
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "example" in out and f"dualmode {command}" in out.split("example")[1], command


def test_lightweight_lists_match_their_sources():
    from dualmode.io import READERS
    from dualmode.simulate.config import TRAJECTORIES
    from dualmode.simulate.sampling import TRAJECTORIES as SAMPLED

    assert tuple(sorted(READERS)) == READER_NAMES
    assert TRAJECTORIES == (*SAMPLED, "planned")


def test_schema_command_prints_the_json_schema(capsys):
    from dualmode.io.schema import manifest_json_schema

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(manifest_json_schema()))


SMALL = ["--matrix", "16", "--n-particles", "3", "--particles-outside-optics", "0", "--optical-field-mm", "2"]


def _snapshot(root):
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_simulate_never_overwrites(tmp_path, capsys):
    dest = tmp_path / "acq"
    assert main(["simulate", str(dest), *SMALL, "-q"]) == 0
    before = _snapshot(tmp_path)
    assert main(["simulate", str(dest), *SMALL, "--seed", "5"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before  # every byte unchanged
    assert main(["simulate", str(dest), *SMALL, "--seed", "5", "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["seed"] == 5
    assert json.loads((dest / "truth.json").read_text())["config"]["seed"] == 5
    assert sorted(os.listdir(tmp_path)) == ["acq"]  # no temporary folder left beside it


def test_failed_simulate_leaves_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for dest in (tmp_path / "new", tmp_path / "empty"):  # spiral is 2D only: fails after writing files
        assert main(["simulate", str(dest), *SMALL, "--ndim", "3", "--trajectory", "spiral"]) == 1
        assert "2D only" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["empty"] and os.listdir(tmp_path / "empty") == []


def test_demo_command_runs_end_to_end(tmp_path):
    """The README's first command: ``dualmode demo`` simulates, processes and registers one folder."""
    from dualmode.cli import main

    out = tmp_path / "demo-out"
    assert main(["demo", "-o", str(out), "-q"]) == 0
    entry = json.loads((out / "summary.json").read_text())["folders"][0]
    assert entry["status"] == "ok" and not entry.get("flags") and entry["matched"] >= 5
    report = json.loads((out / "demo" / "report.json").read_text())
    assert report["signflip"]["residual_background_sigma"] <= 1.5
    assert (out / "demo" / "qc.png").stat().st_size > 10_000 and (out / "demo" / "fused.nii.gz").is_file()


_PLUGINS = """
import contextlib, io, os, sys
sys.argv = ["dualmode", "schema"]
from dualmode.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main() == 0
import pydantic.plugin._loader as loader
print(os.environ.get("PYDANTIC_DISABLE_PLUGINS"), loader._plugins)
"""


@pytest.mark.parametrize("given, expected", [(None, "__all__ None"), ("someplugin", "someplugin {}")])
def test_command_looks_for_no_pydantic_plugins_unless_the_user_says(given, expected):
    """The ``dualmode`` command builds its models without scanning every installed distribution's entry
    points for pydantic plugins (``None``: never scanned); a ``PYDANTIC_DISABLE_PLUGINS`` of the user's is kept."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    out = subprocess.run([sys.executable, "-c", _PLUGINS], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == expected
