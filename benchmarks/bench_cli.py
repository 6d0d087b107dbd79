"""Start-up time of the command line: ``dualmode --help``, ``--version`` (target: < 0.3 s) and one ``run``.

Cases
    ``--help`` and ``--version``: ``dualmode ARG`` (``dualmode``) against a bare interpreter
    (``python -c pass``: the floor every Python CLI pays, including the site packages'
    ``.pth`` hooks) and two widely installed Python command lines as peers (``python -m pip
    ARG``, ``python -m pytest ARG``), all run outside any project. Times are wall times of a
    whole subprocess (medians of alternating rounds, :func:`benchmarks.interleaved_times`);
    the note of the dualmode row gives the in-process time of ``from dualmode.cli import
    main; main([ARG])`` alone, which is what the lazy imports control (the parser imports no
    numpy, numba or scipy; ``tests/test_cli.py`` checks that).
    dualmode's bytecode is compiled first, as an installed package has it
    (:func:`benchmarks.bench_batch.compiled_package`).
    ``run -j 1 (2D demo folder)``: ``dualmode run FOLDER -o OUT -j 1`` of the demo-size 2D
    folder (``SimulationConfig(seed=7)``, 64 x 64, 8 shots) in a fresh interpreter with the
    numba cache filled (issue 18: <= 2.5 s, peak RSS <= 250 MB), against ``python -c pass``,
    alternating, medians of 5 rounds (the wall time runs from the parent's spawn to the end of
    the fresh run, so it includes interpreter start-up). The row's metrics split it: interpreter,
    ``import dualmode.cli``, the folder's imports (:func:`dualmode.batch.warm.warm_imports`),
    the folder (its ``report.json`` total, with the writes and the QC figure), the same folder
    run again in that process (``folder_warm_s``; the difference is first calls: numba cache
    loads, lazy imports) and the batch bookkeeping; RSS after the imports and at the peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import interleaved_times, row

SUITE = "cli"

_INPROC = ("import contextlib, io, time; t = time.perf_counter()\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n"
           "    from dualmode.cli import main; main([{arg!r}])\n"
           "print(time.perf_counter() - t, flush=True)")


def _case(arg: str, rounds: int) -> list[dict]:
    inner: list[float] = []
    commands = {
        "dualmode": [sys.executable, "-c", _INPROC.format(arg=arg)],
        "python": [sys.executable, "-c", "pass"],
        "pip": [sys.executable, "-m", "pip", arg],
        "pytest": [sys.executable, "-m", "pytest", arg],
    }

    def runner(tool: str, cmd: list[str]):
        def run() -> None:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
            if tool == "dualmode":
                inner.append(float(out.stdout.strip().splitlines()[-1]))
        return run

    best, ratio, _ = interleaved_times({t: runner(t, c) for t, c in commands.items()}, rounds=rounds, settle=0.0)
    rows = []
    for tool in commands:
        note = f"`{'dualmode ' + arg if tool == 'dualmode' else ' '.join(commands[tool][1:])}`"
        if tool == "dualmode":
            note += (f"; in-process import + parse: median {np.median(inner) * 1e3:.1f} ms; above the bare "
                     f"interpreter: {(best['dualmode'] - best['python']) * 1e3:.0f} ms; target < 300 ms")
        rows.append(row(SUITE, arg, tool, best[tool], note=note, median_ratio_vs_first=ratio[tool]))
    return rows


#: child of the ``run -j 1`` case: times the phases of one fresh ``dualmode run``, then runs it again warm
_RUN = r"""
import json, os, sys, time
t0 = time.perf_counter()
def mem(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith(key))
from dualmode.cli import main
t_cli = time.perf_counter()
from dualmode.batch.warm import warm_imports
warm_imports()
t_imp, rss_imp = time.perf_counter(), mem("VmRSS")
folder, out = sys.argv[1], sys.argv[2]
def run(tag):
    assert main(["run", folder, "-o", os.path.join(out, tag), "-j", "1"]) == 0
    with open(os.path.join(out, tag, os.path.basename(folder), "report.json")) as f:
        return json.load(f)["timings_s"]
fresh = run("fresh")
t_run, peak, wall = time.perf_counter(), mem("VmHWM"), time.time() - float(sys.argv[3])
warm = run("warm")
print(json.dumps({"cli": t_cli - t0, "imports": t_imp - t_cli, "main": t_run - t_imp, "rss_imports": rss_imp,
                  "peak": peak, "fresh": fresh, "warm": warm, "wall": wall}))
"""


def _breakdown(parts: list[dict], interpreter: float) -> tuple[dict, str]:
    """Median phases of the fresh runs: metrics and a one-line note."""
    med = lambda f: float(np.median([f(p) for p in parts]))  # noqa: E731
    writes = lambda t: t.get("fuse", 0.0) + t.get("write", 0.0) + t.get("qc", 0.0)  # noqa: E731
    m = {"interpreter_s": interpreter, "cli_import_s": med(lambda p: p["cli"]),
         "imports_s": med(lambda p: p["imports"]), "folder_s": med(lambda p: p["fresh"]["total"]),
         "folder_warm_s": med(lambda p: p["warm"]["total"]),
         "first_calls_s": med(lambda p: p["fresh"]["total"] - p["warm"]["total"]),
         "writes_s": med(lambda p: writes(p["fresh"])), "qc_s": med(lambda p: p["fresh"].get("qc", 0.0)),
         "batch_overhead_s": med(lambda p: p["main"] - p["fresh"]["total"]),
         "rss_after_imports_mb": med(lambda p: p["rss_imports"]), "peak_rss_mb": med(lambda p: p["peak"])}
    note = (f"fresh `dualmode run FOLDER -o OUT -j 1` (numba cache filled), medians: interpreter "
            f"{m['interpreter_s']:.2f} s + `import dualmode.cli` {m['cli_import_s']:.2f} s + folder imports "
            f"{m['imports_s']:.2f} s + folder {m['folder_s']:.2f} s (warm {m['folder_warm_s']:.2f} s: first calls "
            f"{m['first_calls_s']:.2f} s; writes incl. fusion {m['writes_s']:.2f} s, qc {m['qc_s']:.2f} s) + batch "
            f"{m['batch_overhead_s']:.2f} s; RSS {m['rss_after_imports_mb']:.0f} MB after imports, peak "
            f"{m['peak_rss_mb']:.0f} MB; targets 2.5 s, 250 MB")
    return m, note


def _run_case(rounds: int) -> list[dict]:
    """``dualmode run -j 1`` of the 2D demo-size folder in a fresh interpreter, against ``python -c pass``."""
    import shutil

    from dualmode.simulate import SimulationConfig, simulate_folder

    tmp = tempfile.mkdtemp(prefix="bench-cli-")
    try:
        folder = os.path.join(tmp, "demo")
        simulate_folder(folder, SimulationConfig(seed=7))
        env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(tmp, "numba-cache")}
        parts: list[dict] = []

        def fresh() -> None:
            shutil.rmtree(os.path.join(tmp, "out"), ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", _RUN, folder, os.path.join(tmp, "out"), repr(time.time())],
                                 env=env, capture_output=True, text=True, check=True)
            parts.append(json.loads(out.stdout.strip().splitlines()[-1]))

        floor: list[float] = []
        fresh()  # fills the numba cache
        parts.clear()
        for _ in range(rounds):  # alternating with the bare interpreter
            fresh()
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # the child runs the folder a second time (warm) after the fresh run: its wall clock stops before that
    t = {"dualmode": float(np.median([p["wall"] for p in parts])), "python": float(np.median(floor))}
    metrics, note = _breakdown(parts, t["python"])
    return [row(SUITE, "run -j 1 (2D demo folder)", "dualmode", t["dualmode"], note=note, target_s=2.5,
                of_target=t["dualmode"] / 2.5, rss_target_mb=250.0, **metrics),
            row(SUITE, "run -j 1 (2D demo folder)", "python", t["python"], note="`python -c pass`: the floor")]


def run(quick: bool) -> list[dict]:
    from .bench_batch import compiled_package

    compiled_package()  # as an installed package: no per-process compile of dualmode's sources
    rounds = 3 if quick else 7
    return _case("--help", rounds) + _case("--version", rounds) + _run_case(3 if quick else 5)
