"""Batch throughput: 20 small 2D folders through ``dualmode run`` as a user runs it (issue 18.1).

Cases
    ``batch of 20 small 2D folders``: ``dualmode run acq/* -o OUT -q`` in a fresh process,
    everything included (imports, worker or cluster start, shutdown). ``dualmode`` = ``-j 1``,
    in that process, one folder after the other (the reference row; the other rows' ratio is
    their time over this one: below 1 means faster than ``-j 1``); ``dualmode --workers 2`` =
    2 worker processes forked from the parent once it has imported the pipeline
    (:mod:`dualmode.batch.forked`); ``dualmode automatic`` = no ``-j`` (dualmode chooses; the
    note says what it chose and why); ``dualmode --workers 2 --scheduler local`` = a Dask
    ``LocalCluster`` of 2 workers (forkserver, started while the parent works), for comparison.
    Rounds alternate between the modes; the median of the rounds is reported. The machine
    the numbers come from may be shared and loaded: compare the ratios, not the seconds.
    ``speedup_vs_j1`` = ``-j 1`` time / the row's time (issue 18: ``--workers 2`` >= 1.7);
    the note adds how the run went (start method, median CPU seconds per folder from
    ``summary.json``) and the load average.

    dualmode's own bytecode is compiled before the rounds (:func:`compiled_package`), as
    ``pip install`` does for an installed package: an editable install run with
    ``PYTHONDONTWRITEBYTECODE=1`` (as on the machines these numbers come from) would
    otherwise compile dualmode's ~70 modules from source in every process (~0.15 s of CPU
    each time, in the critical path of every mode). The note says whether that was possible.

    Bound: both modes pay the imports ``I`` once in the critical path, so on 2 cores the
    speed-up cannot exceed ``(I + 20 t) / (I + 10 t)`` for a folder time ``t`` (with
    I = 1.3 s: 1.83x at t = 0.8 s, 1.78x at t = 0.6 s).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from . import row

SUITE = "batch"
MODES = {"dualmode": ["-j", "1"], "dualmode --workers 2": ["--workers", "2"], "dualmode automatic": [],
         "dualmode --workers 2 --scheduler local": ["--workers", "2", "--scheduler", "local"]}


def compiled_package() -> str:
    """Compile dualmode's modules to ``__pycache__`` (what ``pip install`` does; Python reads the
    bytecode even under ``PYTHONDONTWRITEBYTECODE``); returns how it went, for the notes."""
    import compileall
    import importlib.util

    roots = {os.path.dirname(importlib.util.find_spec(name).origin)
             for name in ("dualmode", "dualmode.io", "dualmode.recon", "dualmode.registration")}
    try:
        ok = all(compileall.compile_dir(root, quiet=2) for root in sorted(roots))
    except OSError as err:
        return f"bytecode not compiled ({err})"
    return "bytecode compiled first, as an install has it" if ok else "bytecode partly compiled"


def _folders(root: str, n: int) -> str:
    from dualmode.simulate import SimulationConfig, simulate_folder

    acq = os.path.join(root, "acq")
    seeds = (3, 14)  # two that register at matrix 32; the others are copies (same work per folder)
    for seed in seeds:
        simulate_folder(os.path.join(acq, f"f{seed:02d}"), SimulationConfig(seed=seed, matrix=32))
    for i in range(n - len(seeds)):
        shutil.copytree(os.path.join(acq, f"f{seeds[i % 2]:02d}"), os.path.join(acq, f"c{i:02d}"))
    return acq


def _run(acq: str, out: str, flags: list[str]) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dualmode", "run", os.path.join(acq, "*"), "-o", out, "-q",
                           *flags], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dualmode run {' '.join(flags)} failed: {proc.stderr[-500:]}")
    with open(os.path.join(out, "summary.json")) as f:
        return seconds, json.load(f)


def _how(summary: dict) -> str:
    """How the run went, from its ``summary.json``: mode (and why), start method, CPU per folder."""
    ex, entries = summary["execution"], summary["folders"]
    text = f"{ex['mode']} ({ex.get('reason')})"
    if ex["mode"] in ("LocalCluster", "processes"):
        text += f", start method {ex.get('start_method', 'spawn')}"
    if ex["mode"] == "LocalCluster":
        text += f", {ex.get('in_process_while_starting', 0)} folders in the parent while the cluster started"
    cpu = [e["cpu_s"] for e in entries if e.get("cpu_s") is not None]
    return text + (f"; CPU per folder median {statistics.median(cpu):.2f} s" if cpu else "")


def run(quick: bool) -> list[dict]:
    n, rounds = 20, 1 if quick else 3
    times: dict[str, list[float]] = {m: [] for m in MODES}
    how, loads = {}, []
    bytecode = compiled_package()
    with tempfile.TemporaryDirectory(prefix="dualmode-bench-batch-") as tmp:
        acq = _folders(tmp, n)
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            for mode, flags in MODES.items():
                t, summary = _run(acq, os.path.join(tmp, "out"), flags)
                times[mode].append(t)
                how[mode] = _how(summary)
    case = f"batch of {n} small 2D folders (matrix 32), fresh process"
    j1 = statistics.median(times["dualmode"])
    return [row(SUITE, case, mode, statistics.median(ts), speedup_vs_j1=j1 / statistics.median(ts),
                **({"target_speedup": 1.7} if mode == "dualmode --workers 2" else {}),
                note=f"{' '.join(MODES[mode]) or 'no -j'}: {how[mode]}; median of {len(ts)} alternating rounds: "
                     + ", ".join(f"{t:.1f}" for t in ts) + f" s; load average {', '.join(f'{x:.1f}' for x in loads)}; {bytecode}")
            for mode, ts in times.items()]
