"""What a fresh ``dualmode run -j 1`` imports: only what the folder uses (issue 18).

These are correctness tests of the import graph, not timing tests: a plotting library,
Dask/distributed, ome-zarr-py (with its pydantic models) or ``scipy.stats`` loaded by a
one-folder run costs seconds and tens of MB per process for nothing. Each module named
here was removed from that path on purpose; the test names the file that brought it back.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

#: modules a registered 2D folder run with ``-j 1`` must not load, and why they are not needed
NOT_NEEDED = {
    "matplotlib": "qc.png is composed as an array and drawn with Pillow (dualmode/qc_canvas.py)",
    "dask": "no folder step builds a Dask graph in-process (dualmode/batch/folder.py)",
    "distributed": "no cluster for -j 1",
    "ome_zarr": "fused.ome.zarr is written with zarr directly (io/ngff.py)",
    "ome_zarr_models": "NGFF metadata written as JSON (io/ngff.py)",
    "scipy.stats": "optical noise sigma from PyWavelets (registration/noise.py), not skimage.restoration",
    "skimage.restoration": "see scipy.stats",
    "numba": "a 2D Cartesian folder runs no numba kernel (dualmode/batch/threads.py, warm.py: not pre-imported)",
    "llvmlite": "see numba",
    "ismrmrd": "the ISMRMRD header is read with xml.etree (io/ismrmrd_header.py), the data with h5py",
    "xsdata": "see ismrmrd",
    "lxml": "see ismrmrd",
}

_RUN = """
import json, sys
from dualmode.cli import main
rc = main(["run", sys.argv[1], "-o", sys.argv[2], "-j", "1"])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    from dualmode.simulate import SimulationConfig, simulate_folder

    root = tmp_path_factory.mktemp("lean")
    simulate_folder(root / "demo", SimulationConfig(seed=7))
    out = subprocess.run([sys.executable, "-c", _RUN, str(root / "demo"), str(root / "out")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((root / "out" / "demo" / "report.json").read_text())
    return json.loads(out.stdout.strip().splitlines()[-1]), report, root / "out" / "demo"


def test_fresh_run_imports_only_what_the_folder_uses(fresh_run):
    result, report, out = fresh_run
    assert result["rc"] == 0 and "error" not in report["registration"]
    # the folder did write what these libraries used to write
    assert (out / "qc.png").is_file() and (out / "fused.ome.zarr" / "0" / "s0" / "zarr.json").is_file()
    loaded = set(result["modules"])
    assert "numpy" in loaded and "zarr" in loaded  # the check sees the child's modules
    present = {m: why for m, why in NOT_NEEDED.items() if m in loaded}
    assert not present, present


def test_wavelet_noise_sigma_equals_skimage_estimate_sigma():
    """registration/noise.py computes skimage.restoration.estimate_sigma without importing scipy.stats."""
    from skimage.restoration import estimate_sigma

    from dualmode.registration.noise import wavelet_noise_sigma

    rng = np.random.default_rng(4)
    for shape, sigma, dtype in (((96, 80), 3.0, np.float32), ((40, 36, 12), 0.5, np.float64), ((64, 64), 7.0, int)):
        img = (rng.normal(100.0, sigma, shape) + np.linspace(0, 50, shape[0])[(...,) + (None,) * (len(shape) - 1)])
        img = img.astype(dtype)
        assert wavelet_noise_sigma(img) == pytest.approx(sigma, rel=0.15)  # the truth
        assert wavelet_noise_sigma(img) == pytest.approx(float(estimate_sigma(img)), rel=1e-6)
        img[: shape[0] // 3] = 0  # a flat region: exactly-zero details are masked out by both
        assert wavelet_noise_sigma(img) == pytest.approx(float(estimate_sigma(img)), rel=1e-6)


def test_pinned_threads_caps_numba_imported_inside_the_block():
    """numba is not imported to pin its threads; a step that imports it inside the block gets the cap."""
    from dualmode.batch import default_workers

    if default_workers() < 2:
        pytest.skip("one core: a one-thread block is no cap")
    code = ("import os, sys\nfrom dualmode.batch.threads import pinned_threads\n"
            "with pinned_threads(1):\n    assert 'numba' not in sys.modules\n"
            "assert 'NUMBA_NUM_THREADS' not in os.environ  # nothing imported it: nothing left behind\n"
            "with pinned_threads(1):\n    import numba\n    assert numba.get_num_threads() == 1, numba.get_num_threads()\n"
            "    from numba import njit, prange\n"
            "    f = njit(parallel=True)(lambda n: sum([1 for i in prange(n)]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"})
    assert out.returncode == 0, out.stderr[-2000:]
