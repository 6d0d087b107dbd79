"""Kill injection: SIGKILL a re-run before each of its file-system calls; never a partial, mixed or stale result.

The re-run replaces the result of an earlier input with that of a changed input. Before
its N-th rename/replace/unlink/remove/rmdir/mkdir while writing outputs the process kills
itself (``tests/dualmode_inject.py``). After each kill ``OUT/scan`` must be exactly the
complete old result or exactly the complete new one, and ``--resume`` must then finish
with outputs identical to an uninterrupted run. The calls are sampled (8 evenly spread,
always including the last ones, where the folder is swapped in) to stay quick in CI; set
``DUALMODE_KILL_SWEEP=all`` for every call.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dualmode.batch.resume import incomplete_outputs, read_report
from dualmode.cli import main
from dualmode.simulate import SimulationConfig, simulate_folder

TESTS = os.path.dirname(os.path.abspath(__file__))


def _run_killed(folder, out, at):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
               DUALMODE_INJECT_KILL_AT=str(at))
    code = "import sys, dualmode_inject; from dualmode.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "run", folder, "-o", out, "-j", "1", "-q"], env=env,
                          capture_output=True, text=True, timeout=600)


def _state(result_dir, old, new):
    """'old' or 'new' when the folder is exactly one complete result; else a description of the damage."""
    report = read_report(result_dir)
    if report is None:
        return "no report.json"
    why = incomplete_outputs(result_dir, report)
    if why:
        return why
    visible = {n for n in os.listdir(result_dir) if not n.startswith(".")} - {"report.html"}
    expected = {k.split("/")[0] for k in report["outputs"]} | {"report.json", "log.txt"}
    if visible != expected:
        return f"extra or missing entries: {sorted(visible ^ expected)}"
    for label, ref in (("old", old), ("new", new)):
        if report["outputs"] == ref["outputs"] and report["input_sha256"] == ref["input_sha256"]:
            return label
    return "a mix of old and new"


def _sample(n):
    if os.environ.get("DUALMODE_KILL_SWEEP") == "all" or n <= 8:
        return list(range(1, n + 1))
    return sorted(set(np.linspace(1, n - 3, 5).round().astype(int).tolist() + [n - 2, n - 1, n]))


def test_kill_before_each_file_system_call(tmp_path):
    scan = tmp_path / "acq" / "scan"
    simulate_folder(scan, SimulationConfig(seed=3, matrix=32))
    base = tmp_path / "base"
    assert main(["run", str(scan), "-o", str(base), "-j", "1", "-q"]) == 0
    old = read_report(str(base / "scan"))
    shutil.rmtree(scan)
    simulate_folder(scan, SimulationConfig(seed=14, matrix=32))  # changed input, same folder
    ref = tmp_path / "ref"
    assert main(["run", str(scan), "-o", str(ref), "-j", "1", "-q"]) == 0
    new = read_report(str(ref / "scan"))
    assert old["outputs"] != new["outputs"]

    count = tmp_path / "count"
    shutil.copytree(base, count)
    proc = _run_killed(str(scan), str(count), 0)
    assert proc.returncode == 0, proc.stderr
    n_calls = int(proc.stdout.split("fs-calls")[-1])
    assert n_calls > 10
    outcomes = {}
    for at in _sample(n_calls):
        work = tmp_path / f"kill{at}"
        shutil.copytree(base, work)
        proc = _run_killed(str(scan), str(work), at)
        assert proc.returncode == -9, (at, proc.returncode, proc.stderr[-2000:])
        outcomes[at] = _state(str(work / "scan"), old, new)
        assert outcomes[at] in ("old", "new"), (at, outcomes[at])
        assert main(["run", str(scan), "-o", str(work), "--resume", "-j", "1", "-q"]) == 0
        assert _state(str(work / "scan"), old, new) == "new", at
        assert not [n for n in os.listdir(work) if n.startswith(".") and n != ".dualmode-lock"]
        assert not [n for n in os.listdir(work / "scan") if n.startswith(".")]
        with open(work / "summary.json") as f:
            assert json.load(f)["state"] == "finished"
    print(f"{n_calls} file-system calls while writing; killed before {len(outcomes)} of them: "
          f"{sum(v == 'old' for v in outcomes.values())} left the old result, "
          f"{sum(v == 'new' for v in outcomes.values())} the new one; 0 partial, 0 mixed, 0 stale")
    assert set(outcomes.values()) == {"old", "new"}
