"""Lazy package namespaces (PEP 562) from one list of names: the package's ``TYPE_CHECKING`` imports.

A package ``__init__`` writes its public names once, as ordinary relative imports inside
``if TYPE_CHECKING:`` (what static tools and readers see), then calls :func:`attach`, which
reads that block and imports each name from its module on first use. A public function named
like its own submodule (``dualmode.recon.nufft``) stays bound to the function when the import
system sets the submodule as an attribute of the package.

Examples
--------
In ``recon/__init__.py``::

    if TYPE_CHECKING:
        from .nufft import nufft, nufft_adjoint

    __all__, __getattr__, __dir__ = attach(__name__, __file__)
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from typing import Callable

__all__ = ["attach"]


def _api_of(init_file: str) -> dict[str, str]:
    """Public name -> relative module, from the ``if TYPE_CHECKING:`` imports of ``init_file``."""
    with open(init_file, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", "") == "TYPE_CHECKING")
    return {alias.asname or alias.name: "." * node.level + (node.module or "")
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


class _LazyPackage(types.ModuleType):
    """Keeps ``package.name`` bound to the function ``name`` when a submodule of that name is imported."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and self.__dict__.get("_lazy_api", {}).get(name) == f".{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


def attach(package: str, init_file: str) -> tuple[list[str], Callable, Callable]:
    """``(__all__, __getattr__, __dir__)`` of a lazy package (see the module docstring)."""
    api = _api_of(init_file)
    module = sys.modules[package]
    module._lazy_api = api
    module.__class__ = _LazyPackage

    def __getattr__(name: str):
        if name in api:
            value = getattr(importlib.import_module(api[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(api))

    return sorted(api), __getattr__, __dir__
