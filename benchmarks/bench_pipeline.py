"""Whole folder pipeline, warm and in a fresh process, and batch scaling over Dask workers.

Cases
    ``pipeline <folder>``: one simulated folder (the issue-18 folders: the 2D demo folder
    ``SimulationConfig(seed=7)``, the 3D Cartesian 64x64x32 folder ``SimulationConfig(seed=3,
    ndim=3)`` and the 3D radial matrix-48 folder ``SimulationConfig(seed=7, ndim=3, matrix=48,
    trajectory="radial", undersample=2)``).
    ``dualmode`` = warm in-process :func:`dualmode.pipeline.process_folder` (median of
    ``rounds`` calls after one warm-up), without the QC figure (its time is in the note and in
    ``qc_s``); the note gives the median time of every stage (``FolderResult.timings``: read =
    input checksums and readers, reconstruct, signflip, quantify, register; ``fuse`` includes the fused and registered
    files, ``qc`` the figure). ``dualmode incl. QC`` = the same calls, whole. ``dualmode fresh
    process`` = ``dualmode run FOLDER -o OUT -j 1`` in a new interpreter with the numba cache
    filled (imports + run + writes), its peak RSS from ``report.json``. ``dualmode cold
    process`` (2D) = the same with an empty numba cache (``NUMBA_CACHE_DIR``): imports + JIT + run.
    ``dualmode cold trajectory cache`` (radial) = warm process, trajectory cache emptied
    (:func:`dualmode.recon.trajectory_cache.clear`) before each call: NUFFT plan, Toeplitz
    kernel and density compensation computed again.
    Rows with a target of issue 18 carry ``target_s`` and ``of_target = time_s / target_s``
    (<= 1 meets it), and ``peak_rss_mb`` / ``rss_target_mb`` where memory has a target.
    ``batch of N folders``: :func:`dualmode.batch.run_batch` on N simulated 2D folders.
    ``dualmode`` = 2 worker processes of a ``distributed.LocalCluster`` started and
    warmed (one folder processed by each worker) beforehand; ``dualmode 1 worker`` = the same with one
    worker (its ratio is the 2-worker speed-up); ``dualmode in-process`` = ``workers=1``
    (no Dask); ``dualmode -j 2 incl. cluster start`` = what ``dualmode run -j 2`` costs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import row

SUITE = "pipeline"

#: issue 18 "done when": case key -> (warm s excluding QC, fresh process s, peak RSS MB)
TARGETS = {"2d": (0.35, 2.5, 250.0), "3d": (1.5, None, None), "radial": (6.0, None, None)}


def _fresh_process(folder: str, out: str, numba_cache: str) -> float:
    """Wall time of ``dualmode run FOLDER -o OUT -j 1`` in a new interpreter."""
    env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache}
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dualmode", "run", folder, "-o", out, "-j", "1"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def _report(out: str, folder: str) -> dict:
    with open(os.path.join(out, os.path.basename(folder), "report.json")) as f:
        return json.load(f)


def _stage_note(reports: list[dict]) -> str:
    keys = [k for k in reports[0]["timings_s"] if k != "total"]
    med = {k: float(np.median([r["timings_s"].get(k, 0.0) for r in reports])) for k in keys}
    return "stages (s, median): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items())


def _warm_runs(folder: str, tmp: str, rounds: int, before=None) -> tuple[list[float], list[float], list[dict]]:
    """``rounds`` in-process calls: wall times, wall times without QC, reports."""
    from dualmode.pipeline import process_folder

    walls, no_qc, reports = [], [], []
    for i in range(rounds):
        out = os.path.join(tmp, "warm", str(i))
        shutil.rmtree(out, ignore_errors=True)
        if before is not None:
            before()
        t0 = time.perf_counter()
        report = process_folder(folder, out).report
        walls.append(time.perf_counter() - t0)
        no_qc.append(walls[-1] - report["timings_s"].get("qc", 0.0))
        reports.append(report)
    return walls, no_qc, reports


def _target(value: float, target: float | None) -> dict:
    return {} if target is None else {"target_s": target, "of_target": value / target}


def _pipeline_case(case: str, key: str, folder: str, tmp: str, rounds: int, cold: bool) -> list[dict]:
    from dualmode.pipeline import process_folder

    warm_t, fresh_t, rss_t = TARGETS[key]
    tmp = tempfile.mkdtemp(dir=tmp, prefix=key + "-")
    cache = tempfile.mkdtemp(dir=tmp, prefix="numba-cache-")
    t_cold = _fresh_process(folder, os.path.join(tmp, "cold"), cache)  # also fills the numba cache
    fresh = [_fresh_process(folder, os.path.join(tmp, "fresh"), cache) for _ in range(max(1, rounds - 1))]
    peak = _report(os.path.join(tmp, "fresh"), folder)["peak_rss_mb"]
    process_folder(folder, os.path.join(tmp, "warmup"))  # JIT and imports in this process
    walls, no_qc, reports = _warm_runs(folder, tmp, rounds)
    qc = float(np.median([r["timings_s"].get("qc", 0.0) for r in reports]))
    t_warm = float(np.median(no_qc))
    rows = [row(SUITE, case, "dualmode", t_warm, qc_s=qc, **_target(t_warm, warm_t),
                note=f"warm, in-process, without the QC figure (qc {qc:.2f} s); {_stage_note(reports)}"),
            row(SUITE, case, "dualmode incl. QC", float(np.median(walls)), note="warm, in-process, whole folder")]
    if key == "radial":
        from dualmode.recon import trajectory_cache

        walls, no_qc, reports = _warm_runs(folder, tmp, rounds, before=trajectory_cache.clear)
        t = float(np.median(no_qc))
        rows.append(row(SUITE, case, "dualmode cold trajectory cache", t, **_target(t, warm_t),
                        note=f"warm process, trajectory cache cleared before each call; {_stage_note(reports)}"))
    t_fresh = float(np.median(fresh))
    rss = {} if rss_t is None else {"rss_target_mb": rss_t}
    rows.append(row(SUITE, case, "dualmode fresh process", t_fresh, peak_rss_mb=peak, **rss,
                    **_target(t_fresh, fresh_t),
                    note=f"`dualmode run FOLDER -o OUT -j 1`, numba cache filled: imports + run + writes; "
                         f"peak RSS {peak:.0f} MB"))
    if cold:
        rows.append(row(SUITE, case, "dualmode cold process", t_cold,
                        note="`dualmode run`, fresh interpreter, empty numba cache: imports + JIT + run"))
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


#: case name, target key, simulation settings, in the quick run
FOLDERS = (
    ("pipeline 2D folder (64x64, 8 shots)", "2d", dict(seed=7), True),
    ("pipeline 3D folder (64x64x32, 8 shots)", "3d", dict(seed=3, ndim=3), False),
    ("pipeline 3D radial folder (matrix 48, undersample 2)", "radial",
     dict(seed=7, ndim=3, matrix=48, trajectory="radial", undersample=2), False),
)


def run(quick: bool) -> list[dict]:
    from dualmode.simulate import SimulationConfig, simulate_folder

    rows = []
    rounds = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="dualmode-bench-") as tmp:
        paths = {}
        for case, key, settings, in_quick in FOLDERS:
            if quick and not in_quick:
                continue
            paths[key] = os.path.join(tmp, "acq", key)
            simulate_folder(paths[key], SimulationConfig(**settings))
            rows += _pipeline_case(case, key, paths[key], tmp, rounds, cold=key == "2d")
        folders = []
        for seed in range(2 if quick else 4):
            folders.append(os.path.join(tmp, "batch", f"s{seed}"))
            simulate_folder(folders[-1], SimulationConfig(seed=100 + seed))
        rows += _batch_case(folders, paths["2d"], tmp)
    return rows
