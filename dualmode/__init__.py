"""dualmode: background-free hyperpolarized 13C MRI fused with optical fluorescence.

Subpackages: :mod:`dualmode.recon` (k-space reconstruction, sign-flip lock-in),
:mod:`dualmode.registration` (particle detection, matching, SimpleITK refinement,
fusion), :mod:`dualmode.io` (raw and image formats), :mod:`dualmode.simulate`
(simulated data with known truth). Conventions live in :mod:`dualmode.conventions`.

The names most users need are available here and imported on first use, so
``import dualmode`` stays fast::

    from dualmode import load_acquisition, process_folder, signflip_combine, register
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily, PEP 562)
_API = {
    "load_acquisition": "dualmode.io",
    "read_kspace": "dualmode.io",
    "read_optical": "dualmode.io",
    "InputError": "dualmode.errors",
    "Volume": "dualmode.volume",
    "process_folder": "dualmode.pipeline",
    "FolderResult": "dualmode.pipeline",
    "PipelineOptions": "dualmode.pipeline",
    "run_batch": "dualmode.batch",
    "simulate_folder": "dualmode.simulate",
    "SimulationConfig": "dualmode.simulate",
    "signflip_combine": "dualmode.recon.signflip",
    "reconstruct_image": "dualmode.recon.cartesian",
    "nufft": "dualmode.recon.nufft",
    "nufft_adjoint": "dualmode.recon.nufft",
    "register": "dualmode.registration.register",
    "RegistrationError": "dualmode.registration.register",
    "fuse": "dualmode.registration.fusion",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dualmode' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
