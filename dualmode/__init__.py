"""dualmode: background-free hyperpolarized 13C MRI fused with optical fluorescence.

Subpackages: :mod:`dualmode.recon` (k-space reconstruction, sign-flip lock-in),
:mod:`dualmode.registration` (particle detection, matching, SimpleITK refinement,
fusion), :mod:`dualmode.io` (raw and image formats). Conventions live in
:mod:`dualmode.conventions`.
"""

import os as _os

__version__ = "0.1.0"

# In a source checkout, recon/, registration/ and io/ sit beside this folder and are
# installed as dualmode.recon etc. (see pyproject.toml); make them importable as such
# when the checkout itself is on sys.path, e.g. ``python -m dualmode`` from the repo root.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "recon")):
    __path__.append(_root)  # noqa: F821 (package __path__)
