"""Import time of the package in a fresh interpreter (the flat API is lazy).

Cases
    ``import``: ``import dualmode`` (``dualmode``) against ``import numpy`` and ``import scipy``
    (peers: what a user pays for the libraries every scientific package imports) and a bare
    interpreter (``python -c pass``: the floor). Times are wall times of a whole subprocess, so
    the interpreter start-up is included in every row; the note gives the median of the
    in-process ``time.perf_counter`` around the import statement alone.
    ``first use of the flat API``: ``from dualmode import nufft`` (imports numpy, numba and the
    kernels module) against ``import numba``.
    ``RSS per library``: resident memory (``VmRSS``) and time each library adds when
    imported into a fresh interpreter after numpy: the floor of a one-folder process
    (shared-library pages of SimpleITK and llvmlite count in full, as ``/usr/bin/time``'s
    peak RSS counts them).
dualmode's bytecode is compiled first, as an installed package has it
(:func:`benchmarks.bench_batch.compiled_package`).
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


#: what one fresh ``dualmode run`` of a registered 2D folder loads, biggest first (``rss`` case)
LIBRARIES = {"numpy": "pass", "scipy (fft, ndimage, optimize)": "import scipy.fft, scipy.ndimage, scipy.optimize",
             "SimpleITK": "import SimpleITK", "numba + llvmlite": "import numba", "zarr": "import zarr",
             "pydantic": "import pydantic", "h5py (the ISMRMRD reader)": "import h5py", "nibabel": "import nibabel",
             "tifffile": "import tifffile", "scikit-image (feature, registration, transform)":
                 "from skimage.feature import peak_local_max; from skimage.registration import "
                 "phase_cross_correlation; from skimage.transform import downscale_local_mean",
             "Pillow": "import PIL.Image, PIL.ImageDraw, PIL.ImageFont", "matplotlib (not loaded by dualmode run)":
                 "import matplotlib.figure, matplotlib.backends.backend_agg"}

_RSS = ("import time\n"
        "def rss():\n    with open('/proc/self/status') as f:\n"
        "        return next(int(l.split()[1]) / 1024 for l in f if l.startswith('VmRSS'))\n"
        "{first}\nr0, t0 = rss(), time.perf_counter()\n{stmt}\n"
        "print(time.perf_counter() - t0, rss() - r0)")


def _rss_case(rounds: int) -> list[dict]:
    """Import time and resident memory each library adds to a fresh interpreter (numpy loaded first)."""
    rows = []
    for name, stmt in LIBRARIES.items():
        code = _RSS.format(first="import numpy" if stmt != "pass" else "", stmt=stmt if stmt != "pass" else
                           "import numpy")
        runs = [subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                for _ in range(rounds)]
        t, mb = np.median([[float(v) for v in r.stdout.split()] for r in runs], axis=0)
        what = f"`{stmt}` after numpy" if stmt != "pass" else "`import numpy` into a bare interpreter"
        rows.append(row(SUITE, "RSS per library", name, float(t), rss_mb=round(float(mb), 1),
                        note=f"{what}: +{mb:.0f} MB resident, median of {rounds}"))
    return rows


def run(quick: bool) -> list[dict]:
    from .bench_batch import compiled_package

    compiled_package()  # as an installed package: no per-process compile of dualmode's sources
    rounds = 3 if quick else 7
    rows = _case("import", {"dualmode": "import dualmode", "numpy": "import numpy", "scipy": "import scipy",
                            "python": "pass"}, rounds)
    rows += _case("first use of the flat API", {"dualmode": "from dualmode import nufft",
                                                 "numba": "import numba"}, rounds)
    return rows + _rss_case(3)
