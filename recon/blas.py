"""One BLAS thread for small dense products.

The dense matrices of the optics prior and the particle fits are small (tens to a few
hundred rows); threaded OpenBLAS was 5-60x slower on them on a busy 2-core machine, so the
functions that use them run under :func:`single_thread_blas` (``threadpoolctl``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

from threadpoolctl import ThreadpoolController

__all__ = ["ProcessWide", "single_thread_blas"]


class ProcessWide:
    """A process-wide setting shared by concurrent threads (BLAS pools, ITK's global thread count).

    :meth:`hold` applies the setting when the first holder enters and undoes it when the last
    one leaves: a limiter per caller would give the setting back under a thread still inside.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._undo: Callable[[], None] | None = None

    @contextlib.contextmanager
    def hold(self, apply: Callable[[], Callable[[], None]]) -> Iterator[None]:
        """Hold the setting for the block; ``apply()`` (first holder only) sets it and returns its undo."""
        with self._lock:
            if self._holders == 0:
                self._undo = apply()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    undo, self._undo = self._undo, None
                    undo()


_ONE_BLAS_THREAD = ProcessWide()
_blas_pools: ThreadpoolController | None = None  # built on first use (scanning the libraries takes ~1 ms)


def _one_blas_thread() -> Callable[[], None]:
    global _blas_pools
    if _blas_pools is None:
        _blas_pools = ThreadpoolController().select(user_api="blas")
    return _blas_pools.limit(limits=1).restore_original_limits


def single_thread_blas(fn):
    """Decorator: run ``fn`` with BLAS limited to one thread.

    BLAS pools are process-wide, so concurrent callers share one limit (:class:`ProcessWide`);
    only BLAS pools are touched (OpenMP's are per thread).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _ONE_BLAS_THREAD.hold(_one_blas_thread):
            return fn(*args, **kwargs)
    return wrapper
