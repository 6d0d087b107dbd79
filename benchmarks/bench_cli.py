"""Start-up time of the command line: ``dualmode --help`` and ``dualmode --version`` (target: < 0.3 s).

Cases
    ``--help`` and ``--version``: ``dualmode ARG`` (``dualmode``) against a bare interpreter
    (``python -c pass``: the floor every Python CLI pays, including the site packages'
    ``.pth`` hooks) and two widely installed Python command lines as peers (``python -m pip
    ARG``, ``python -m pytest ARG``), all run outside any project. Times are wall times of a
    whole subprocess (medians of alternating rounds, :func:`benchmarks.interleaved_times`);
    the note of the dualmode row gives the in-process time of ``from dualmode.cli import
    main; main([ARG])`` alone, which is what the lazy imports control (the parser imports no
    numpy, numba or scipy; ``tests/test_cli.py`` checks that).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

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


def run(quick: bool) -> list[dict]:
    rounds = 3 if quick else 7
    return _case("--help", rounds) + _case("--version", rounds)
