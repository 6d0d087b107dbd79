"""Readers and writers: raw k-space (ISMRMRD, vendor formats, npz), fluorescence
(OME-TIFF/TIFF) and acquisition folders. All bad input raises :class:`InputError`.

The public names are imported on first use (PEP 562).
"""

from __future__ import annotations

import ast
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools and readers see; imported lazily below
    from dualmode.errors import InputError
    from dualmode.kspace import KSpace, KSpaceHeader
    from .ismrmrd_io import read_ismrmrd, write_ismrmrd
    from .manifest import FORMAT, Acquisition, load_acquisition, read_manifest
    from .optics import OpticalImage, read_optical, write_ome_tiff
    from .readers import READERS, read_kspace, read_npz, register_reader, write_npz
    from .bruker import read_bruker
    from .convert import convert_to_ismrmrd
    from .jcamp import parse_jcamp, read_jcamp
    from .twix import read_twix, remove_readout_oversampling
    from .varian import read_procpar, read_varian


def _lazy_api() -> dict[str, str]:
    """Public name -> module, read from the ``TYPE_CHECKING`` imports above (the one list of names)."""
    with open(__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", "") == "TYPE_CHECKING")
    return {alias.asname or alias.name: "." * node.level + (node.module or "")
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


#: public name -> module that defines it, imported on first use (PEP 562)
_API = _lazy_api()
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
