"""One BLAS thread for small dense products.

The dense matrices of the optics prior and the particle fits are small (tens to a few
hundred rows); threaded OpenBLAS was 5-60x slower on them on a busy 2-core machine, so the
functions that use them run under :func:`single_thread_blas` (``threadpoolctl``).
"""

from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController

__all__ = ["single_thread_blas"]

_CONTROLLER: ThreadpoolController | None = None


def single_thread_blas(fn):
    """Decorator: run ``fn`` with BLAS limited to one thread (the controller is built on first use)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _CONTROLLER
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        with _CONTROLLER.limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper
