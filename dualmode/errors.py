"""Exceptions raised for bad input: one clear message naming the file and what is wrong."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad acquisition input. ``str(err)`` names the file and the field at fault."""

    def __init__(self, path: str | os.PathLike | None, problem: str, field: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.field = field
        self.problem = problem
        where = self.path or "<input>"
        if field:
            where += f" [{field}]"
        super().__init__(f"{where}: {problem}")


#: Refuse to allocate arrays larger than this many bytes from declared sizes.
MAX_ALLOCATION_BYTES = 8 * 1024**3


def check_allocation(path, field: str, shape, itemsize: int) -> None:
    """Raise :class:`InputError` before allocating an absurd declared size."""
    n = 1
    for s in shape:
        s = int(s)
        if s < 0:
            raise InputError(path, f"negative size {s} in {tuple(shape)}", field)
        n *= s
    if n * itemsize > MAX_ALLOCATION_BYTES:
        raise InputError(
            path,
            f"declared size {tuple(shape)} would need {n * itemsize / 1e9:.1f} GB, refusing",
            field,
        )
