"""Heavy imports once per process, before the first folder (and outside its time limit).

Local Dask workers load this module at start-up (``preload``), so a folder's time and the
time limit count its own work, not numpy, scipy and SimpleITK loading. Only modules a
folder imports are listed (``tests/test_lean_imports.py`` checks that ``dualmode run -j 1`` loads
no plotting library, Dask or numba for a folder that does not use them).
"""

from __future__ import annotations

import importlib

#: what a 2D folder imports (the package __init__s are lazy, PEP 562: name the modules, not the packages);
#: numba is left to the folders that run a kernel (non-Cartesian NUFFT) and SimpleITK to those that resample a
#: large grid or refine by mutual information: a 2D Cartesian folder loads neither
MODULES = ("numpy", "scipy.fft", "scipy.ndimage", "scipy.sparse.csgraph", "nibabel", "tifffile",
           "zarr", "h5py", "PIL.Image", "PIL.PngImagePlugin", "PIL.ImageDraw", "PIL.ImageFont",
           "skimage.transform", "skimage.exposure",
           "dualmode.pipeline", "dualmode.outputs", "dualmode.qc", "dualmode.qc_canvas", "dualmode.sanity",
           "dualmode.io.manifest", "dualmode.io.readers", "dualmode.io.ngff", "dualmode.recon.lockin_recon",
           "dualmode.recon.quantify", "dualmode.recon.displacement", "dualmode.recon.t2star",
           "dualmode.registration.register", "dualmode.registration.noise",
           "dualmode.registration.fusion")


def warm_imports() -> None:
    """Import :data:`MODULES` (each only once per process; missing optional ones are skipped) and
    read the library versions every ``report.json`` records (cached; forked workers inherit both)."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from dualmode.provenance import versions

    versions()


def preload_in_forkserver(ctx, drop: tuple[str, ...] = ()) -> None:
    """Have the forkserver of ``ctx`` import :mod:`dualmode.batch.preload` (the pipeline) once, so
    every worker it forks starts warm; ``drop``: modules of the current preload list to leave out.
    Call before the forkserver starts."""
    import multiprocessing.forkserver

    current = list(getattr(multiprocessing.forkserver._forkserver, "_preload_modules", None) or [])
    if "dualmode.batch.preload" not in current:
        ctx.set_forkserver_preload([m for m in current if m not in drop] + ["dualmode.batch.preload"])


def dask_setup(worker=None) -> None:
    """``distributed`` preload hook: run :func:`warm_imports` as the worker starts."""
    warm_imports()
