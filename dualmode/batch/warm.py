"""Heavy imports once per process, before the first folder (and outside its time limit).

Local Dask workers load this module at start-up (``preload``), so a folder's time and the
time limit count its own work, not numpy, scipy, numba, SimpleITK and matplotlib loading.
"""

from __future__ import annotations

import importlib

MODULES = ("numpy", "scipy.fft", "scipy.ndimage", "numba", "SimpleITK", "nibabel", "tifffile", "zarr",
           "matplotlib.pyplot", "dualmode.pipeline", "dualmode.outputs", "dualmode.qc", "dualmode.io",
           "dualmode.recon.lockin_recon", "dualmode.registration")


def warm_imports() -> None:
    """Import :data:`MODULES` (each only once per process; missing optional ones are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def dask_setup(worker=None) -> None:
    """``distributed`` preload hook: run :func:`warm_imports` as the worker starts."""
    warm_imports()
