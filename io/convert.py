"""``convert_to_ismrmrd``: any supported raw format -> ISMRMRD HDF5 (the vendor-neutral standard)."""

from __future__ import annotations

import os

from dualmode.errors import InputError
from .ismrmrd_io import write_ismrmrd
from dualmode.kspace import KSpace
from .readers import read_kspace


def convert_to_ismrmrd(src: str | os.PathLike, dst: str | os.PathLike, format: str | None = None) -> KSpace:
    """Read ``src`` with :func:`read_kspace` and write it to ``dst`` with :func:`write_ismrmrd`.

    Parameters
    ----------
    src : path-like
        Any format :func:`read_kspace` reads (Bruker folder, Varian ``.fid`` folder,
        Siemens ``.dat``, ``.npz``, ISMRMRD).
    dst : path-like
        Output ``.h5``/``.mrd`` file (overwritten).
    format : str, optional
        Source format name; guessed from ``src`` if omitted.

    Returns
    -------
    KSpace
        The k-space that was written (header in RAS, as read).

    Raises
    ------
    InputError
        Unreadable source, or data ISMRMRD Cartesian acquisitions cannot hold
        (spectroscopic FIDs, non-Cartesian samples).
    """
    ksp = read_kspace(src, format)
    if ksp.header.trajectory != "cartesian":
        raise InputError(src, f"{ksp.header.trajectory} data cannot be written as Cartesian ISMRMRD", "trajectory")
    dst = os.fspath(dst)
    if os.path.abspath(dst) == os.path.abspath(os.fspath(src)):
        raise InputError(dst, "destination would overwrite the source")
    write_ismrmrd(dst, ksp)
    return ksp
