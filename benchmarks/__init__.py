"""Benchmark suites of dualmode against peer tools; run them with ``python -m benchmarks``.

Each suite is a module ``benchmarks.bench_<name>`` with ``run(quick: bool) -> list[dict]``.
One row per (case, tool) with keys

``suite, case, tool, time_s`` (seconds, None when the tool could not run),
accuracy keys as they apply (``nrmse``, ``error``, ``tre_mm``, ...), ``note``.

The row whose ``tool`` is ``"dualmode"`` is the reference of its case: the runner adds
``ratio = time_s / dualmode time_s`` to every row of that case (> 1: the other tool is slower).
A peer that is not installed is a row with ``time_s = None`` and a note starting
``"missing"``, never left out.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

SUITES = ("bench_cartesian", "bench_nufft", "bench_cs", "bench_registration", "bench_pipeline", "bench_batch",
          "bench_import", "bench_cli", "bench_qc", "bench_quantitative")


def best_time(fn: Callable[[], object], repeat: int = 3, min_time: float = 0.05) -> tuple[float, object]:
    """Best wall time of ``fn()`` over ``repeat`` runs (after one warm-up), and its last result.

    Calls that take less than ``min_time`` are looped to get a stable per-call time.
    """
    result = fn()
    t0 = time.perf_counter()
    result = fn()
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-9)))
    best = once if number == 1 else float("inf")
    for _ in range(repeat - (number == 1)):
        t0 = time.perf_counter()
        for _ in range(number):
            result = fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best, result


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int = 7,
                      settle: float = 0.05
                      ) -> tuple[dict[str, float], dict[str, float], dict[str, object]]:
    """Time several tools in alternation, ``rounds`` times each (after one warm-up call each).

    On a shared machine the speed drifts by tens of percent within minutes; alternating the
    tools exposes them to the same drift. Before each timed call the process sleeps
    ``settle`` seconds (not timed): OpenMP runtimes (FINUFFT's, numba's) keep their threads
    spinning after a parallel region, and a tool started right after another one loses the
    cores to them (measured: dualmode's 2D adjoint 11 ms alone, 20 ms right after FINUFFT).
    Returns the best time per tool, the median over rounds of ``time / time of the first
    tool`` (drift-free ratio) and each tool's last result.
    """
    results = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    first = np.array(times[next(iter(fns))])
    best = {name: float(min(t)) for name, t in times.items()}
    median_ratio = {name: float(np.median(np.array(t) / first)) for name, t in times.items()}
    return best, median_ratio, results


def nrmse(x: np.ndarray, ref: np.ndarray) -> float:
    """``||x - ref|| / ||ref||`` (complex allowed)."""
    x, ref = np.asarray(x), np.asarray(ref)
    return float(np.linalg.norm((x - ref).ravel()) / np.linalg.norm(ref.ravel()))


def row(suite: str, case: str, tool: str, time_s: float | None, note: str = "", **metrics) -> dict:
    """One result row (see the module docstring)."""
    return {"suite": suite, "case": case, "tool": tool,
            "time_s": None if time_s is None else float(time_s), **metrics, "note": note}


def missing(suite: str, case: str, tool: str, err: BaseException | str) -> dict:
    """Row of a peer that is not installed or cannot run here."""
    why = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return row(suite, case, tool, None, note=f"missing: {why}")
