"""Atomic file output: write to a temporary file in the same folder, then rename.

A killed process leaves either the previous complete file or none, never a
partial one (``os.replace`` is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.ome.tif``)
    so that libraries choosing a format by extension still do the right thing.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp-{name}", dir=folder or ".")
    os.close(fd)
    os.remove(tmp)  # libraries create the file themselves
    tmp_final = tmp[: -len(name)] + name if tmp.endswith(name) else tmp
    try:
        yield tmp_final
        os.replace(tmp_final, path)
    finally:
        for leftover in {tmp, tmp_final}:
            if os.path.lexists(leftover):
                if os.path.isdir(leftover):
                    import shutil

                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    os.remove(leftover)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
