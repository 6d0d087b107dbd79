"""Whole folder pipeline, cold and warm, and batch scaling over Dask workers.

Cases
    ``pipeline <2D|3D> folder``: :func:`dualmode.pipeline.process_folder` on a simulated
    folder. ``dualmode`` = warm (second call in one process); ``dualmode cold process`` =
    a fresh interpreter with an empty numba cache (``NUMBA_CACHE_DIR``): imports, JIT
    compilation and the run (2D only); ``dualmode fresh process`` = a fresh interpreter
    with the numba cache filled, whose ``report.json`` gives the folder's peak RSS.
    ``batch of N folders``: :func:`dualmode.batch.run_batch` on N simulated 2D folders.
    ``dualmode`` = 2 worker processes of a ``distributed.LocalCluster`` started and
    warmed (one folder processed by each worker) beforehand; ``dualmode 1 worker`` = the same with one
    worker (its ratio is the 2-worker speed-up); ``dualmode in-process`` = ``workers=1``
    (no Dask); ``dualmode -j 2 incl. cluster start`` = what ``dualmode run -j 2`` costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from . import row

SUITE = "pipeline"

_CHILD = """
import sys
from dualmode.pipeline import process_folder
process_folder(sys.argv[1], sys.argv[2])
"""


def _fresh_process(folder: str, out: str, numba_cache: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CHILD, folder, out], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def _stages(report: dict) -> str:
    t = report["timings_s"]
    return "stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total")


def _peak(out: str, folder: str) -> float:
    with open(os.path.join(out, os.path.basename(folder), "report.json")) as f:
        return json.load(f)["peak_rss_mb"]


def _pipeline_case(case: str, folder: str, tmp: str, cold: bool) -> list[dict]:
    from dualmode.pipeline import process_folder

    rows = []
    cache = tempfile.mkdtemp(dir=tmp, prefix="numba-cache-")
    fresh_out = os.path.join(tmp, "fresh", case.split()[1])
    if cold:
        t_cold = _fresh_process(folder, os.path.join(tmp, "cold"), cache)
    else:
        _fresh_process(folder, os.path.join(tmp, "cold"), cache)  # fills the numba cache
    t_fresh = _fresh_process(folder, fresh_out, cache)
    peak = _peak(fresh_out, folder)
    process_folder(folder, os.path.join(tmp, "warmup"))  # JIT and imports in this process
    t0 = time.perf_counter()
    report = process_folder(folder, os.path.join(tmp, "warm")).report
    t_warm = time.perf_counter() - t0
    rows.append(row(SUITE, case, "dualmode", t_warm, note="warm, in-process; " + _stages(report)))
    if cold:
        rows.append(row(SUITE, case, "dualmode cold process", t_cold,
                        note="fresh interpreter, empty numba cache: imports + JIT + run"))
    rows.append(row(SUITE, case, "dualmode fresh process", t_fresh,
                    note=f"fresh interpreter, numba cache filled: imports + run; peak RSS {peak:.0f} MB"))
    return rows


def _batch_time(folders, out, **kwargs) -> tuple[float, dict]:
    from dualmode.batch import run_batch

    t0 = time.perf_counter()
    summary = run_batch(folders, out, **kwargs)
    seconds = time.perf_counter() - t0
    if summary["ok"] != len(folders):
        bad = [e["error"] for e in summary["folders"] if e["status"] != "ok"]
        raise RuntimeError(f"batch failed: {bad}")
    return seconds, summary


def _warmup(folder: str, out: str) -> None:
    """Process ``folder`` once in a worker: imports, numba cache loads, matplotlib set-up."""
    from dualmode.pipeline import process_folder

    process_folder(folder, os.path.join(out, str(os.getpid())))


def _warm_client(n_workers: int, folder: str, out: str):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client.run(_warmup, folder, out)  # on every worker
    return cluster, client


def _batch_case(folders: list[str], warm_folder: str, tmp: str) -> list[dict]:
    case = f"batch of {len(folders)} 2D folders"
    rows = []

    def peak(summary):
        return max(e.get("peak_rss_mb") or 0 for e in summary["folders"])

    times = {}
    for n in (1, 2):
        cluster, client = _warm_client(n, warm_folder, os.path.join(tmp, "warm-workers"))
        try:
            times[n], summary = _batch_time(folders, os.path.join(tmp, f"w{n}"), scheduler=client)
        finally:
            client.close()
            cluster.close()
        times[f"peak{n}"] = peak(summary)
    rows.append(row(SUITE, case, "dualmode", times[2],
                    note=f"2 workers, warm LocalCluster; speed-up over 1 worker {times[1] / times[2]:.2f}x; "
                         f"peak RSS per folder {times['peak2']:.0f} MB"))
    rows.append(row(SUITE, case, "dualmode 1 worker", times[1],
                    note=f"1 worker, warm LocalCluster; peak RSS per folder {times['peak1']:.0f} MB"))
    t, summary = _batch_time(folders, os.path.join(tmp, "inproc"), workers=1)
    rows.append(row(SUITE, case, "dualmode in-process", t, note="workers=1: no Dask, this process"))
    t, summary = _batch_time(folders, os.path.join(tmp, "cli"), workers=2)
    rows.append(row(SUITE, case, "dualmode -j 2 incl. cluster start", t,
                    note="LocalCluster start, worker imports, run, shutdown"))
    return rows


def run(quick: bool) -> list[dict]:
    from dualmode.simulate import SimulationConfig, simulate_folder

    rows = []
    with tempfile.TemporaryDirectory(prefix="dualmode-bench-") as tmp:
        f2 = os.path.join(tmp, "acq", "seed7")
        simulate_folder(f2, SimulationConfig(seed=7))
        rows += _pipeline_case("pipeline 2D folder (64x64, 8 shots)", f2, tmp, cold=True)
        if not quick:
            f3 = os.path.join(tmp, "acq", "seed3d")
            simulate_folder(f3, SimulationConfig(seed=3, ndim=3))
            rows += _pipeline_case("pipeline 3D folder (64x64x32, 8 shots)", f3, tmp, cold=False)
        folders = []
        for seed in range(2 if quick else 4):
            folders.append(os.path.join(tmp, "batch", f"s{seed}"))
            simulate_folder(folders[-1], SimulationConfig(seed=100 + seed))
        rows += _batch_case(folders, f2, tmp)
    return rows
