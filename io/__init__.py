"""Readers and writers: raw k-space (ISMRMRD, vendor formats, npz), fluorescence
(OME-TIFF/TIFF) and acquisition folders. All bad input raises :class:`InputError`."""

from .errors import InputError
from .ismrmrd_io import read_ismrmrd, write_ismrmrd
from .kspace import KSpace, KSpaceHeader
from .manifest import FORMAT, Acquisition, load_acquisition, read_manifest
from .optics import OpticalImage, read_optical, write_ome_tiff
from .readers import READERS, read_kspace, read_npz, register_reader, write_npz

__all__ = [
    "FORMAT", "READERS", "Acquisition", "InputError", "KSpace", "KSpaceHeader", "OpticalImage",
    "load_acquisition", "read_ismrmrd", "read_kspace", "read_manifest", "read_npz", "read_optical",
    "register_reader", "write_ismrmrd", "write_npz", "write_ome_tiff",
]
