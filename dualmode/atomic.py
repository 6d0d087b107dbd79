"""Atomic output: write beside the target under a hidden temporary name, then rename.

A killed process leaves either the previous complete output or none, never a
partial one: ``os.replace`` is atomic on POSIX within one file system.

Files
    ``os.replace(tmp, path)`` swaps in one step (after ``fsync`` of the data).
Directories (``.ome.zarr`` and other stores)
    A directory cannot be replaced by one rename when the target exists, so the
    old one is renamed away first (``.<name>.old-*``), the new one renamed in,
    and the old one removed. A kill between the two renames leaves no ``path``
    (never a partial one) and the previous copy under the hidden ``.old`` name.

Leftovers of killed runs all match ``.<name>.*.tmp-<name>`` or ``.<name>.*.old-<name>``;
:func:`remove_stale` deletes them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from typing import Iterator

_TMP = ".tmp-"
_OLD = ".old-"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``; directories (either side) via rename-away of the old one."""
    if not (os.path.isdir(tmp) or os.path.isdir(path)):
        _fsync_file(tmp)
        os.replace(tmp, path)
        return
    folder, name = os.path.split(path)
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{name}.", suffix=f"{_OLD}{name}", dir=folder or ".")
        os.rmdir(old)
        os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it to ``path`` if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.ome.tif``,
    ``.ome.zarr``) so that libraries choosing a format by extension still do the
    right thing. The block may create a file or a directory there. On an exception
    the temporary is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{_TMP}{name}", dir=folder or ".")
    os.close(fd)
    os.remove(tmp)  # libraries create the file or directory themselves
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {path}")
        _swap_in(tmp, path)
    finally:
        _remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def remove_stale(folder: str | os.PathLike) -> list[str]:
    """Delete temporaries left in ``folder`` by killed writers; return their paths.

    Only names made by :func:`atomic_path` are touched. When a kill happened between
    the two renames of a directory, the old copy is put back instead of deleted.
    """
    folder = os.fspath(folder)
    removed = []
    for leftover in sorted(glob.glob(os.path.join(glob.escape(folder), ".*.*"))):
        name = os.path.basename(leftover)
        for marker in (_TMP, _OLD):
            head, sep, target = name.rpartition(marker)
            if not sep or not target or not head.startswith(f".{target}."):
                continue
            dest = os.path.join(folder, target)
            if marker == _OLD and not os.path.lexists(dest):
                os.rename(leftover, dest)  # restore the previous complete copy
            else:
                _remove(leftover)
                removed.append(leftover)
            break
    return removed
