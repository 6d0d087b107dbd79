"""Regenerate the results in ``docs/performance.md`` and ``README.md`` from one benchmark run.

Usage::

    python -m benchmarks.report_docs benchmarks/results/2026-12-01.json [--docs docs/performance.md]
                                     [--readme README.md] [--check]

``python -m benchmarks --write-docs`` calls this on the results it just wrote. The text
between ``<!-- results start -->`` and ``<!-- results end -->`` in the docs page, and between
``<!-- perf-table start -->`` and ``<!-- perf-table end -->`` in the README, is replaced; the
rest of both files is left alone. ``--check`` writes nothing and exits 1 when a file is not
what the results JSON gives (for CI or a pre-commit check).

The tables show the issue-18 targets against the measured values (as ratios where the
target is a ratio), the batch modes side by side (``-j 1``, ``--workers 2``, in-process, warm
workers), the per-stage times and peak memory of a folder, and the NUFFT peers at
eps 1e-3 (FINUFFT, ducc0, mri-nufft), including the contention case. A value the run did
not measure is shown as ``not measured``, never guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_BLOCK, README_BLOCK = "results", "perf-table"
NOT_MEASURED = "not measured"


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _f(v, digits: int = 3) -> str:
    """A number for a table cell (``-`` for None)."""
    if not _num(v):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 100 else f"{v:.0f}"


def find(rows: list[dict], suite: str, case: str, tool: str) -> dict | None:
    """First row of ``suite`` whose case matches the regex ``case`` and whose tool is ``tool``."""
    for r in rows:
        if r.get("suite") == suite and re.search(case, str(r.get("case", ""))) and r.get("tool") == tool:
            return r
    return None


def _time(r: dict | None) -> float | None:
    return r["time_s"] if r is not None and _num(r.get("time_s")) else None


def note_number(r: dict | None, pattern: str) -> float | None:
    """A number the suite wrote into a row's note (``pattern`` has one group), or None."""
    m = re.search(pattern, str((r or {}).get("note", "")))
    return float(m.group(1)) if m else None


def _target(what: str, goal: str, measured: float | None, ok: bool | None, shown: str | None = None) -> dict:
    return {"target": what, "goal": goal, "measured": shown or (NOT_MEASURED if measured is None else _f(measured)),
            "met": None if measured is None else ok}


def batch_targets(rows: list[dict]) -> list[dict]:
    """``--workers 2`` vs ``-j 1`` on 20 small folders (``benchmarks.bench_batch``)."""
    j1 = _time(find(rows, "batch", r"batch of 20", "dualmode"))
    w2 = _time(find(rows, "batch", r"batch of 20", "dualmode --workers 2"))
    speedup = j1 / w2 if j1 and w2 else None
    shown = None if speedup is None else f"{speedup:.2f}x ({j1:.1f} s vs {w2:.1f} s)"
    return [_target("20 small 2D folders: `--workers 2` vs `-j 1`, fresh process, cluster start included",
                    ">= 1.7x faster", speedup, speedup is not None and speedup >= 1.7, shown)]


def folder_targets(rows: list[dict]) -> list[dict]:
    """Per-folder times and peak memory (``benchmarks.bench_pipeline``)."""
    out = []
    cases = ((r"2D folder", "dualmode", "2D demo-size folder, warm in-process", 0.35),
             (r"2D folder", "dualmode fresh process", "2D demo-size folder, fresh process", 2.5),
             (r"3D radial", "dualmode", "3D radial matrix-48 folder, warm", 6.0),
             (r"3D folder \(64x64x32", "dualmode", "64x64x32 Cartesian folder, warm", 1.5))
    for case, tool, what, default in cases:
        r = find(rows, "pipeline", case, tool)
        goal = (r or {}).get("target_s") if _num((r or {}).get("target_s")) else default
        t = _time(r)
        out.append(_target(what, f"<= {goal:g} s", t, t is not None and t <= goal,
                           None if t is None else f"{t:.2f} s"))
    r = find(rows, "pipeline", r"2D folder", "dualmode fresh process")
    rss = r.get("peak_rss_mb") if r is not None and _num(r.get("peak_rss_mb")) else note_number(r, r"peak RSS (\d+)")
    out.append(_target("2D demo-size folder, peak RSS of the process", "<= 250 MB", rss,
                       rss is not None and rss <= 250, None if rss is None else f"{rss:.0f} MB"))
    return out


def nufft_ratio(rows: list[dict], case: str, peer: str) -> tuple[float | None, float | None]:
    """``(best/best, median of per-round ratios)`` of dualmode time over ``peer`` time."""
    ours, theirs = find(rows, "nufft", case, "dualmode"), find(rows, "nufft", case, peer)
    t0, t1 = _time(ours), _time(theirs)
    best = t0 / t1 if t0 and t1 else None
    return best, note_number(theirs, r"median over alternating rounds(?: under load)? ([\d.]+)")


def nufft_cases(rows: list[dict], busy: bool) -> list[str]:
    """NUFFT case names in run order (with or without the busy-processes contention)."""
    cases = []
    for r in rows:
        c = str(r.get("case", ""))
        if r.get("suite") == "nufft" and ("busy" in c) == busy and c not in cases:
            cases.append(c)
    return cases


def _err(v) -> str:
    return f"{v:.1e}" if _num(v) else "-"


def _ratio_text(best, median) -> str:
    if best is None and median is None:
        return NOT_MEASURED
    return f"{_f(median)} (best/best {_f(best)})" if median is not None else _f(best)


def nufft_targets(rows: list[dict]) -> list[dict]:
    """dualmode one-shot time over FINUFFT's at eps 1e-3, error, contention, peers present."""
    out = []
    for case in nufft_cases(rows, busy=False):
        best, median = nufft_ratio(rows, re.escape(case) + "$", "finufft eps=0.001")
        value = median if median is not None else best
        err = (find(rows, "nufft", re.escape(case) + "$", "dualmode") or {}).get("rel_error")
        ok = value is not None and value <= 1.0 and _num(err) and err <= 2e-3
        out.append(_target(f"NUFFT {case}: time / FINUFFT (eps 1e-3), error", "<= 1.0x, error <= 2e-3", value,
                           ok, None if value is None else f"{_ratio_text(best, median)}, error {_err(err)}"))
    for case in nufft_cases(rows, busy=True):
        best, median = nufft_ratio(rows, re.escape(case) + "$", "finufft eps=0.001")
        value = median if median is not None else best
        out.append(_target(f"NUFFT {case}: time / FINUFFT", "<= 1.25x", value,
                           value is not None and value <= 1.25, None if value is None else _ratio_text(best, median)))
    peers = {t for r in rows if r.get("suite") == "nufft" and _num(r.get("time_s")) for t in [str(r.get("tool"))]}
    have = [p for p in ("ducc0", "mri-nufft") if any(t.startswith(p) for t in peers)]
    out.append(_target("NUFFT peers ducc0 and mri-nufft in the table", "both", len(have) if peers else None,
                       len(have) == 2, ", ".join(have) or "neither" if peers else None))
    return out


def targets_table(rows: list[dict]) -> str:
    """Markdown table of the issue-18 "done when" items: goal, measured, met."""
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in batch_targets(rows) + folder_targets(rows) + nufft_targets(rows):
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} |")
    return "\n".join(lines)


def batch_table(rows: list[dict]) -> str:
    """Every batch row (``batch`` suite and the ``pipeline`` suite's warm-worker batch) with its
    time relative to the case's ``-j 1`` / reference row."""
    lines = ["| case | mode | time (s) | time / reference | how it ran |", "|---|---|---|---|---|"]
    picked = [r for r in rows if r.get("suite") == "batch" or (r.get("suite") == "pipeline"
                                                               and str(r.get("case", "")).startswith("batch"))]
    for r in picked:
        note = str(r.get("note", "")).replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['tool']} | {_f(r.get('time_s'))} | {_f(r.get('ratio'))} | {note} |")
    return "\n".join(lines) if picked else f"Batch: {NOT_MEASURED}."


def stage_table(rows: list[dict]) -> str:
    """Per-stage times (from the pipeline rows' notes) and peak memory per folder type."""
    lines = ["| folder | warm (s) | stages (s) | fresh process (s) | peak RSS (MB) |", "|---|---|---|---|---|"]
    cases = [r["case"] for r in rows if r.get("suite") == "pipeline" and r.get("tool") == "dualmode"
             and not str(r.get("case", "")).startswith("batch")]
    for case in cases:
        warm = find(rows, "pipeline", re.escape(case) + "$", "dualmode")
        fresh = find(rows, "pipeline", re.escape(case) + "$", "dualmode fresh process")
        m = re.search(r"stages \(s[^)]*\):\s*([^;|]+)", str(warm.get("note", "")))
        rss = (fresh or {}).get("peak_rss_mb")
        rss = rss if _num(rss) else note_number(fresh, r"peak RSS (\d+)")
        lines.append(f"| {case} | {_f(_time(warm))} | {m.group(1).strip() if m else '-'} | {_f(_time(fresh))} "
                     f"| {_f(rss)} |")
    return "\n".join(lines) if cases else f"Per-folder stages: {NOT_MEASURED}."


def nufft_table(rows: list[dict]) -> str:
    """dualmode one-shot time / peer time (median of alternating rounds; best/best) at eps 1e-3."""
    peers = ("finufft eps=0.001", "ducc0 eps=0.001", "mri-nufft eps=0.001")
    lines = ["| case | " + " | ".join(f"/ {p}" for p in peers) + " | dualmode error |",
             "|---" * (len(peers) + 2) + "|"]
    cases = nufft_cases(rows, busy=False) + nufft_cases(rows, busy=True)
    for case in cases:
        cells = [_ratio_text(*nufft_ratio(rows, re.escape(case) + "$", p)) for p in peers]
        err = (find(rows, "nufft", re.escape(case) + "$", "dualmode") or {}).get("rel_error")
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {_err(err)} |")
    return "\n".join(lines) if cases else f"NUFFT: {NOT_MEASURED}."


def _source_line(results: dict, path: str) -> str:
    env = results.get("environment", {})
    command = " ".join(["python -m benchmarks", *results.get("argv", [])])
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return (f"From `{path if rel.startswith('..') else rel}`: "
            f"`{command}`, {env.get('date_utc', 'date unknown')}, "
            f"{env.get('machine', 'machine unknown')}, load average at start {env.get('load_average', '?')}.")


def docs_block(results: dict, path: str) -> str:
    """The generated part of ``docs/performance.md``: targets, batch, stages, NUFFT, every row."""
    from .__main__ import markdown_table

    rows = results.get("rows", [])
    versions = ", ".join(f"{k} {v}" for k, v in results.get("environment", {}).get("versions", {}).items())
    return "\n\n".join([
        _source_line(results, path) + (f" Versions: {versions}." if versions else ""),
        "### Issue-18 targets\n\n" + targets_table(rows),
        "### Batch: `-j 1`, `--workers 2`, in-process, warm workers\n\n"
        "`time / reference`: time over the `-j 1` row of the same case (`batch` suite) or over "
        "the 2-worker row (`pipeline` suite); below 1 is faster.\n\n" + batch_table(rows),
        "### Per folder: stages and peak memory\n\n" + stage_table(rows),
        "### NUFFT against the best CPU peers (eps 1e-3)\n\n"
        "dualmode one-shot time / peer time: median of the per-round ratios over alternating "
        "rounds (best time / best time in brackets); below 1 dualmode is faster.\n\n" + nufft_table(rows),
        "### Every row\n\n`ratio` = time of the tool / time of the `dualmode` row of the same case "
        "(> 1: dualmode is faster).\n\n" + markdown_table(rows),
    ])


def readme_block(results: dict, path: str) -> str:
    """The generated README table: the issue-18 targets against this run."""
    return _source_line(results, path) + "\n\n" + targets_table(results.get("rows", []))


def replace_block(text: str, name: str, content: str, where: str = "file") -> str:
    """Replace what lies between ``<!-- name start -->`` and ``<!-- name end -->``."""
    start, end = f"<!-- {name} start -->", f"<!-- {name} end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{where}: markers {start} ... {end} not found")
    return text[:i + len(start)] + "\n" + content.strip() + "\n" + text[j:]


def update(results_path: str, docs: str, readme: str, check: bool = False) -> list[str]:
    """Write (or with ``check`` only compare) both files; the paths that changed / differ."""
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    changed = []
    for path, name, block in ((docs, DOCS_BLOCK, docs_block), (readme, README_BLOCK, readme_block)):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = replace_block(old, name, block(results, results_path), where=path)
        if new != old:
            changed.append(path)
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="benchmarks/results/<date>.json written by python -m benchmarks")
    parser.add_argument("--docs", default=os.path.join(ROOT, "docs", "performance.md"))
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    changed = update(args.results, args.docs, args.readme, check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'updated'}: {path}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
