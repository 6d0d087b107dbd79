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


#: Upper limit of the memory budget in bytes (see :func:`memory_budget`).
MAX_ALLOCATION_BYTES = 8 * 1024**3
#: Environment variable overriding the budget (GB, e.g. ``DUALMODE_MEMORY_BUDGET_GB=32``).
BUDGET_VARIABLE = "DUALMODE_MEMORY_BUDGET_GB"
#: Bytes the reconstruction allocates per declared k-space sample, all arrays counted: the
#: complex64 samples (8 B) plus what lock-in reconstruction holds at its peak (measured with
#: ``tracemalloc`` on a 2D Cartesian folder: 87 B per sample, i.e. the complex128 FFT input
#: and output, the per-shot complex64 images and the lock-in's complex128 working copies),
#: rounded up to 96 B.
RECON_BYTES_PER_SAMPLE = 96


def memory_budget() -> int:
    """Bytes a folder may allocate: ``$DUALMODE_MEMORY_BUDGET_GB`` if set, else the smaller of
    :data:`MAX_ALLOCATION_BYTES` and half the machine's physical memory."""
    given = os.environ.get(BUDGET_VARIABLE)
    if given:
        return int(float(given) * 1024**3)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return MAX_ALLOCATION_BYTES
    return min(MAX_ALLOCATION_BYTES, physical // 2)


def _count(path, field: str, shape) -> int:
    n = 1
    for s in shape:
        s = int(s)
        if s < 0:
            raise InputError(path, f"negative size {s} in {tuple(shape)}", field)
        n *= s
    return n


def check_allocation(path, field: str, shape, itemsize: int) -> None:
    """Raise :class:`InputError` before allocating ``shape`` x ``itemsize`` bytes beyond :func:`memory_budget`."""
    need = _count(path, field, shape) * itemsize
    if need > memory_budget():
        raise InputError(path, f"declared size {tuple(shape)} would need {need / 1e9:.1f} GB, more than the "
                               f"memory budget of {memory_budget() / 1e9:.1f} GB (${BUDGET_VARIABLE}); refusing",
                         field)


def check_recon_allocation(path, field: str, shape) -> None:
    """Raise :class:`InputError` when reconstructing k-space of the declared ``shape`` would exceed the budget.

    Counts :data:`RECON_BYTES_PER_SAMPLE` per sample: every array the reconstruction
    allocates (complex128 copies included), not only the samples read.

    Examples
    --------
    >>> check_recon_allocation("k.h5", "encoding.matrixSize", (8, 1, 64, 1_000_000, 1))  # doctest: +SKIP
    InputError: k.h5 [encoding.matrixSize]: declared size (8, 1, 64, 1000000, 1) means about 49.2 GB ...
    """
    n = _count(path, field, shape)
    need = n * RECON_BYTES_PER_SAMPLE
    if need > memory_budget():
        raise InputError(path, f"declared size {tuple(shape)} means about {need / 1e9:.1f} GB for the "
                               f"reconstruction ({n} samples x {RECON_BYTES_PER_SAMPLE} B), more than the memory "
                               f"budget of {memory_budget() / 1e9:.1f} GB (${BUDGET_VARIABLE}); refusing", field)
