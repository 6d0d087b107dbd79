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

from .accuracy import matching_precision_recall, true_tre
from .config import SimulationConfig
from .folder import simulate_folder
from .phantom import SyntheticPair, make_pair, rotation_z
from .vendor import write_bruker, write_twix, write_varian

__all__ = [
    "SimulationConfig", "SyntheticPair", "make_pair", "matching_precision_recall", "rotation_z",
    "simulate_folder", "true_tre", "write_bruker", "write_twix", "write_varian",
]
