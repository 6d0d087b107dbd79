"""napari plugin of dualmode (npe2 manifest ``napari.yaml``, entry point ``napari.manifest``).

``napari OUT/name`` (or dropping the folder on napari) opens a result folder, an
acquisition folder or a NIfTI file written by dualmode with the layers of
:mod:`dualmode.view`: RAS millimetres, axial plane, anterior up, 13C magenta windowed
from the noise, optics green, particles as points.
"""

from ._reader import get_reader, read

__all__ = ["get_reader", "read"]
