"""``python -m benchmarks.report_docs``: docs/performance.md and the README table generated from a
results JSON (content, not timing). The expected numbers are worked out by hand from the rows below."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest


def _benchmarks_module(name: str):
    """``benchmarks.<name>`` from the repository: the benchmark suite is not installed and CI runs plain
    ``pytest`` (the repository root is not on sys.path there)."""
    if "benchmarks" not in sys.modules:
        root = Path(__file__).resolve().parents[1] / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", root / "__init__.py", submodule_search_locations=[str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"benchmarks.{name}")


report_docs = _benchmarks_module("report_docs")


def _row(suite, case, tool, t, **kw):
    return {"suite": suite, "case": case, "tool": tool, "time_s": t, "note": kw.pop("note", ""), **kw}


ROWS = [
    _row("batch", "batch of 20 small 2D folders (matrix 32), fresh process", "dualmode", 30.0, ratio=1.0),
    _row("batch", "batch of 20 small 2D folders (matrix 32), fresh process", "dualmode --workers 2", 16.0,
         ratio=16 / 30, note="--workers 2: LocalCluster, 2 workers"),
    _row("pipeline", "pipeline 2D folder (64x64, 8 shots)", "dualmode", 0.30, target_s=0.35,
         note="warm, in-process; stages (s, median): read 0.010, qc 0.200"),
    _row("pipeline", "pipeline 2D folder (64x64, 8 shots)", "dualmode fresh process", 3.1, peak_rss_mb=240.0),
    _row("pipeline", "batch of 4 2D folders", "dualmode", 4.0, note="2 workers, warm LocalCluster"),
    _row("pipeline", "batch of 4 2D folders", "dualmode in-process", 5.0),
    _row("nufft", "2D radial forward", "dualmode", 0.010, rel_error=7e-4),
    _row("nufft", "2D radial forward", "finufft eps=0.001", 0.0125,
         note="complex64; dualmode / finufft median over alternating rounds 0.90"),
    _row("nufft", "2D radial forward", "ducc0 eps=0.001", 0.008,
         note="nthreads=2; dualmode / ducc0 median over alternating rounds 1.30"),
    _row("nufft", "2D radial forward, 2 busy processes", "dualmode", 0.03),
    _row("nufft", "2D radial forward, 2 busy processes", "finufft eps=0.001", 0.02,
         note="dualmode / finufft median over alternating rounds under load 1.40"),
]


def _lines(table: str) -> dict[str, str]:
    """Targets table row text by its first cell."""
    return {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}


def test_targets_are_computed_from_the_rows_and_judged():
    lines = _lines(report_docs.targets_table(ROWS))
    batch = next(v for k, v in lines.items() if k.startswith("20 small 2D folders"))
    assert "1.88x (30.0 s vs 16.0 s)" in batch and batch.endswith("| yes |")  # 30 / 16 = 1.875 >= 1.7
    warm = lines["2D demo-size folder, warm in-process"]
    assert "0.30 s" in warm and warm.endswith("| yes |")
    fresh = lines["2D demo-size folder, fresh process"]
    assert "3.10 s" in fresh and fresh.endswith("| **no** |")  # 3.1 > 2.5
    assert lines["2D demo-size folder, peak RSS of the process"].endswith("| 240 MB | yes |")
    radial = lines["3D radial matrix-48 folder, warm"]
    assert "not measured" in radial and radial.endswith("| - |")  # absent: never guessed
    nufft = lines["NUFFT 2D radial forward: time / FINUFFT (eps 1e-3), error"]
    assert "0.9 (best/best 0.8)" in nufft and nufft.endswith("| yes |")  # median 0.90, 0.010 / 0.0125
    busy = lines["NUFFT 2D radial forward, 2 busy processes: time / FINUFFT"]
    assert "1.4 (best/best 1.5)" in busy and busy.endswith("| **no** |")  # 1.40 > 1.25
    assert lines["NUFFT peers ducc0 and mri-nufft in the table"].endswith("| ducc0 | **no** |")


def test_batch_stage_and_nufft_tables():
    batch = report_docs.batch_table(ROWS)
    assert "| dualmode --workers 2 | 16 | 0.533 |" in batch and "batch of 4 2D folders | dualmode in-process" in batch
    stages = report_docs.stage_table(ROWS)
    assert "| pipeline 2D folder (64x64, 8 shots) | 0.3 | read 0.010, qc 0.200 | 3.1 | 240 |" in stages
    nufft = report_docs.nufft_table(ROWS)
    assert "| 2D radial forward | 0.9 (best/best 0.8) | 1.3 (best/best 1.25) | not measured | 7.0e-04 |" in nufft


def test_update_replaces_only_the_marked_blocks_and_check_reports_stale(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"environment": {"date_utc": "2026-12-01 10:00 UTC", "load_average": [0.5]},
                                   "argv": [], "rows": ROWS}))
    docs, readme = tmp_path / "perf.md", tmp_path / "README.md"
    docs.write_text("# Perf\nintro\n<!-- results start -->\nold table\n<!-- results end -->\nprose after\n")
    readme.write_text("# x\n<!-- perf-table start -->\nold\n<!-- perf-table end -->\n## Tests\n")
    argv = [str(results), "--docs", str(docs), "--readme", str(readme)]
    assert report_docs.main(argv + ["--check"]) == 1  # stale: nothing written
    assert "old table" in docs.read_text()
    assert report_docs.main(argv) == 0
    text = docs.read_text()
    assert text.startswith("# Perf\nintro\n<!-- results start -->\n") and text.endswith("<!-- results end -->\nprose after\n")
    assert "old table" not in text and "2026-12-01 10:00 UTC" in text and "1.88x" in text
    assert "| 2D radial forward | dualmode | 0.01 |" in text  # the full table of every row
    r = readme.read_text()
    assert "1.88x" in r and r.endswith("<!-- perf-table end -->\n## Tests\n")
    assert report_docs.main(argv + ["--check"]) == 0  # up to date now


def test_missing_markers_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="perf.md: markers <!-- results start -->"):
        report_docs.replace_block("no markers", "results", "x", where="perf.md")
