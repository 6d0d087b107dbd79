"""Import time of the package in a fresh interpreter (the flat API is lazy).

Cases
    ``import``: ``import dualmode`` (``dualmode``) against ``import numpy`` and ``import scipy``
    (peers: what a user pays for the libraries every scientific package imports) and a bare
    interpreter (``python -c pass``: the floor). Times are wall times of a whole subprocess, so
    the interpreter start-up is included in every row; the note gives the median of the
    in-process ``time.perf_counter`` around the import statement alone.
    ``first use of the flat API``: ``from dualmode import nufft`` (imports numpy, numba and the
    kernels module) against ``import numba``.
Rounds alternate the tools (medians of 7 rounds; see :func:`benchmarks.interleaved_times`).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from . import interleaved_times, row

SUITE = "import"

_TIMED = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def _command(stmt: str) -> list[str]:
    return [sys.executable, "-c", _TIMED.format(stmt=stmt)]


def _case(case: str, statements: dict[str, str], rounds: int) -> list[dict]:
    inner: dict[str, list[float]] = {tool: [] for tool in statements}

    def runner(tool: str, stmt: str):
        def run() -> None:
            out = subprocess.run(_command(stmt), check=True, capture_output=True, text=True)
            inner[tool].append(float(out.stdout.strip()))
        return run

    best, ratio, _ = interleaved_times({tool: runner(tool, stmt) for tool, stmt in statements.items()},
                                       rounds=rounds, settle=0.0)
    rows = []
    for tool, stmt in statements.items():
        note = f"`{stmt}`; import statement alone: median {np.median(inner[tool]) * 1e3:.1f} ms"
        rows.append(row(SUITE, case, tool, best[tool], note=note,
                        median_ratio_vs_first=ratio[tool]))
    return rows


def run(quick: bool) -> list[dict]:
    rounds = 3 if quick else 7
    rows = _case("import", {"dualmode": "import dualmode", "numpy": "import numpy", "scipy": "import scipy",
                            "python": "pass"}, rounds)
    rows += _case("first use of the flat API", {"dualmode": "from dualmode import nufft",
                                                 "numba": "import numba"}, rounds)
    return rows
