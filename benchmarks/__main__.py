"""Run the benchmark suites and write ``benchmarks/results/<YYYY-MM-DD>.md`` and ``.json``.

Usage::

    python -m benchmarks [--quick] [--only SUITE ...] [--no-write] [--write-docs]

A suite whose module is missing or raises appears in the table as such. Ratios are
``time_s / time_s of the "dualmode" row of the same case`` (> 1: dualmode is faster).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback

from . import SUITES, row

STANDARD = ("suite", "case", "tool", "time_s", "ratio", "note")
PACKAGES = ("dualmode", "numpy", "scipy", "numba", "dask", "distributed", "SimpleITK", "finufft", "sigpy",
            "itk-elastix", "scikit-image")


def run_suite(name: str, quick: bool) -> list[dict]:
    """Rows of one suite; a missing or failing suite gives one row saying so."""
    t0 = time.perf_counter()
    short = name.removeprefix("bench_")
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"benchmarks.{name}":
            return [row(short, "-", "-", None, note=f"suite missing: benchmarks/{name}.py not found")]
        traceback.print_exc()
        return [row(short, "-", "-", None, note=f"suite failed on import: {type(err).__name__}: {err}")]
    except Exception as err:
        traceback.print_exc()
        return [row(short, "-", "-", None, note=f"suite failed on import: {type(err).__name__}: {err}")]
    try:
        rows = list(module.run(quick))
    except Exception as err:
        traceback.print_exc()
        return [row(short, "-", "-", None, note=f"suite failed: {type(err).__name__}: {err}")]
    if not rows:
        return [row(short, "-", "-", None, note="suite returned no rows")]
    for r in rows:
        r["suite"] = short  # one spelling per suite in the table
        r.setdefault("note", "")
    print(f"{name}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``ratio = time_s / dualmode time_s`` within each (suite, case)."""
    ref = {(r["suite"], r["case"]): r["time_s"] for r in rows
           if r.get("tool") == "dualmode" and _number(r.get("time_s"))}
    for r in rows:
        t, t_ref = r.get("time_s"), ref.get((r["suite"], r["case"]))
        r["ratio"] = t / t_ref if _number(t) and t_ref else None


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, NaN/Inf to None, unknown objects to str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return f"{v:.2e}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict]) -> str:
    """Rows as a markdown table: standard columns plus every other key that occurs."""
    extra = []
    for r in rows:
        extra += [k for k in r if k not in STANDARD and k not in extra]
    cols = ["suite", "case", "tool", "time_s", "ratio", *extra, "note"]
    head = {"time_s": "time (s)", "ratio": "ratio vs dualmode"}
    lines = ["| " + " | ".join(head.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "time_s" and v is None:
                cells.append("missing" if str(r.get("note", "")).startswith("missing") else "failed"
                             if "fail" in str(r.get("note", "")) else "-")
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> dict:
    """Machine, load and versions the numbers were measured with."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = "missing"
    try:
        out = subprocess.run(["bart", "version"], capture_output=True, text=True, timeout=10)
        versions["bart"] = out.stdout.strip() or out.stderr.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        versions["bart"] = "missing"
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def report_markdown(rows: list[dict], env: dict, argv: list[str], seconds: float) -> str:
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return "\n".join([
        f"# Benchmarks {env['date_utc']}",
        "",
        f"Command: `python -m benchmarks {' '.join(argv)}` ({seconds:.0f} s). "
        f"Machine: {env['machine']}, load average at start {env['load_average']} "
        "(shared machine: timings are noisy).",
        "",
        f"Versions: {vers}.",
        "",
        "`ratio` = time of the tool / time of the `dualmode` row of the same case "
        "(> 1: dualmode is faster). `missing`: the peer is not installed or cannot run here.",
        "",
        markdown_table(rows),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, few repeats")
    parser.add_argument("--only", nargs="+", metavar="SUITE", help=f"subset of {', '.join(SUITES)}")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results file")
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate docs/performance.md and the README table from this run")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "results"),
                        help="results folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    suites = SUITES
    if args.only:
        names = [s if s.startswith("bench_") else f"bench_{s}" for s in args.only]
        unknown = [s for s in names if s not in SUITES]
        if unknown:
            parser.error(f"unknown suite(s) {unknown}; known: {list(SUITES)}")
        suites = tuple(names)
    env = environment()
    t0 = time.perf_counter()
    rows = []
    for name in suites:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += run_suite(name, args.quick)
    add_ratios(rows)
    seconds = time.perf_counter() - t0
    text = report_markdown(rows, env, argv, seconds)
    print(text)
    if not args.no_write:
        os.makedirs(args.results, exist_ok=True)
        stem = time.strftime("%Y-%m-%d", time.gmtime())
        if args.only:
            stem += "-" + "-".join(s.removeprefix("bench_") for s in suites)
        if args.quick:
            stem += "-quick"
        path = os.path.join(args.results, stem)
        with open(path + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump(_clean({"environment": env, "argv": argv, "seconds": seconds, "rows": rows}), f, indent=1)
        print(f"wrote {path}.md and {path}.json", file=sys.stderr)
        if args.write_docs:
            from .report_docs import main as write_docs

            write_docs([path + ".json"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
