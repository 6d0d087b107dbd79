"""Readers and writers: raw k-space (ISMRMRD, vendor formats, npz), fluorescence
(OME-TIFF/TIFF) and acquisition folders. All bad input raises :class:`InputError`.

The public names are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dualmode.lazy import attach

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

__all__, __getattr__, __dir__ = attach(__name__, __file__)
