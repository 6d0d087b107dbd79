"""Readers and writers: raw k-space (ISMRMRD, vendor formats, npz), fluorescence
(OME-TIFF/TIFF) and acquisition folders. All bad input raises :class:`InputError`."""

from dualmode.errors import InputError
from dualmode.kspace import KSpace, KSpaceHeader

from .ismrmrd_io import read_ismrmrd, write_ismrmrd
from .manifest import FORMAT, Acquisition, load_acquisition, read_manifest
from .optics import OpticalImage, read_optical, write_ome_tiff
from .readers import READERS, read_kspace, read_npz, register_reader, write_npz

__all__ = [
    "FORMAT", "READERS", "Acquisition", "InputError", "KSpace", "KSpaceHeader", "OpticalImage",
    "load_acquisition", "read_ismrmrd", "read_kspace", "read_manifest", "read_npz", "read_optical",
    "register_reader", "write_ismrmrd", "write_npz", "write_ome_tiff",
]

from .bruker import read_bruker  # noqa: E402
from .convert import convert_to_ismrmrd  # noqa: E402
from .jcamp import parse_jcamp, read_jcamp  # noqa: E402
from .twix import read_twix, remove_readout_oversampling  # noqa: E402
from .varian import read_procpar, read_varian  # noqa: E402

__all__ += [
    "convert_to_ismrmrd", "parse_jcamp", "read_bruker", "read_jcamp", "read_procpar", "read_twix",
    "read_varian", "remove_readout_oversampling",
]
