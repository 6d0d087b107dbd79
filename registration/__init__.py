"""Particle detection, point matching, SimpleITK refinement and fusion.

Modules: :mod:`.particles` (detection), :mod:`.orientation` (which orientations are searched),
:mod:`.triplets` (3D: all rotations from congruent particle triangles), :mod:`.matching`
(in-plane: RANSAC over pair invariants), :mod:`.hypotheses` (verification and refinement),
:mod:`.pointfit` (weighted Umeyama, leave-one-out TRE), :mod:`.refine` (Mattes MI),
:mod:`.problem` + :mod:`.register` (the whole procedure), :mod:`.result` (result and error),
:mod:`.resample` (optics on MRI grids, ``.tfm``), :mod:`.fusion` (two-channel volumes).
Synthetic pairs and accuracy helpers live in :mod:`dualmode.simulate`.

Public API: :func:`detect_mri_particles`, :func:`detect_optical_particles`,
:func:`register` (-> :class:`Registration`, raises :class:`RegistrationError`),
:func:`resample_optical`, :func:`write_tfm` / :func:`read_tfm`,
:func:`leave_one_out_tre`, :func:`fit_points`, :func:`fuse`.

The public names are imported on first use (PEP 562).
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools and readers see; imported lazily below
    from .fusion import aligned_grid, fuse
    from .particles import Particles, detect_mri_particles, detect_optical_particles
    from .pointfit import fit_points, leave_one_out_tre
    from .register import Registration, RegistrationError, grid_frame, register
    from .resample import read_tfm, resample_image, resample_optical, write_tfm


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


class _Package(types.ModuleType):
    """Keeps a public function named like its own submodule (``register``) bound to the function
    when the import system sets that submodule as an attribute of the package."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _API.get(name) == f".{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
