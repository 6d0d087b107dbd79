"""One BLAS thread for small dense products.

The dense matrices of the optics prior and the particle fits are small (tens to a few
hundred rows); threaded OpenBLAS was 5-60x slower on them on a busy 2-core machine, so the
functions that use them run under :func:`single_thread_blas` (``threadpoolctl``).
"""

from __future__ import annotations

import functools
import threading

from threadpoolctl import ThreadpoolController

__all__ = ["single_thread_blas"]

_LOCK = threading.Lock()
_holders = 0
_limiter = None
_blas_pools: ThreadpoolController | None = None  # built on first use (scanning the libraries takes ~1 ms)


def single_thread_blas(fn):
    """Decorator: run ``fn`` with BLAS limited to one thread.

    BLAS pools are process-wide: with several threads inside decorated functions at once, the
    first to enter sets the limit and the last to leave restores the previous one (a limiter per
    call would give the pools back to a thread that is still inside). Only BLAS pools are touched
    (OpenMP's are per thread).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()
    return wrapper


def _enter() -> None:
    global _holders, _limiter, _blas_pools
    with _LOCK:
        if _holders == 0:
            if _blas_pools is None:
                _blas_pools = ThreadpoolController().select(user_api="blas")
            _limiter = _blas_pools.limit(limits=1)
        _holders += 1


def _leave() -> None:
    global _holders, _limiter
    with _LOCK:
        _holders -= 1
        if _holders == 0:
            _limiter.restore_original_limits()
            _limiter = None
