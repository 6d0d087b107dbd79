"""Simulated data with known truth: acquisition folders, registration pairs, vendor files.

Nothing in :mod:`dualmode.recon`, :mod:`dualmode.registration` or :mod:`dualmode.io`
depends on this package; it exists so that every stage can be checked against a truth.

* :func:`simulate_folder` writes a whole acquisition folder (13C k-space with alternating
  polarization, fluorescence, manifest) plus ``truth/`` and ``truth.json``;
  :class:`SimulationConfig` holds every knob (``dualmode simulate`` flags mirror it).
* :func:`make_pair` renders an MRI/optical particle pair with a known ``optical_to_mri``;
  :func:`rotation_z` is the one optical-frame rotation/mirror convention used by both.
* :func:`true_tre`, :func:`matching_precision_recall` score a registration against truth.
* :func:`write_bruker`, :func:`write_twix`, :func:`write_varian` write vendor raw files with known
  content and geometry.
"""

import importlib

#: public name -> submodule (imported on first use, so that ``dualmode.simulate.config`` is cheap
#: for the command-line parser)
_API = {
    "SimulationConfig": "config", "simulate_folder": "folder", "matching_precision_recall": "accuracy",
    "true_tre": "accuracy", "SyntheticPair": "phantom", "make_pair": "phantom", "rotation_z": "phantom",
    "write_bruker": "vendor", "write_twix": "vendor", "write_varian": "vendor",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
