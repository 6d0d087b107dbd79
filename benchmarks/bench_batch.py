"""Batch throughput: 20 small 2D folders through ``dualmode run`` as a user runs it (issue 18.1).

Cases
    ``batch of 20 small 2D folders``: ``dualmode run acq/* -o OUT -q`` in a fresh process,
    everything included (imports, cluster start, shutdown). ``dualmode`` = ``-j 1``, in
    that process, one folder after the other (the reference row; the other rows' ratio is
    their time over this one: below 1 means faster than ``-j 1``); ``dualmode --workers 2`` = a
    local cluster of 2 single-threaded workers, started while the parent already works;
    ``dualmode automatic`` = no ``-j`` (dualmode chooses, and the note says what it chose).
    Rounds alternate between the modes; the median of the rounds is reported. The machine
    the numbers come from may be shared and loaded: compare the ratios, not the seconds.
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
MODES = {"dualmode": ["-j", "1"], "dualmode --workers 2": ["--workers", "2"], "dualmode automatic": []}


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


def run(quick: bool) -> list[dict]:
    n, rounds = 20, 1 if quick else 3
    times: dict[str, list[float]] = {m: [] for m in MODES}
    chosen = {}
    with tempfile.TemporaryDirectory(prefix="dualmode-bench-batch-") as tmp:
        acq = _folders(tmp, n)
        for _ in range(rounds):
            for mode, flags in MODES.items():
                t, summary = _run(acq, os.path.join(tmp, "out"), flags)
                times[mode].append(t)
                ex = summary["execution"]
                chosen[mode] = (f"{ex['mode']}" + (f", {ex['workers']} workers" if ex["mode"] == "LocalCluster" else "")
                                + f"; {ex.get('in_process_while_starting', 0)} folders in the parent while the "
                                  f"cluster started" * (ex["mode"] == "LocalCluster"))
    case = f"batch of {n} small 2D folders (matrix 32), fresh process"
    return [row(SUITE, case, mode, statistics.median(ts),
                note=f"{' '.join(MODES[mode]) or 'no -j'}: {chosen[mode]}; median of {len(ts)} alternating rounds: "
                     + ", ".join(f"{t:.1f}" for t in ts) + " s")
            for mode, ts in times.items()]
