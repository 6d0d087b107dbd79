"""Work that depends only on the trajectory, done once per trajectory and reused.

Shots of one acquisition, and folders of a study acquired with the same protocol, share
their k-space coordinates. The NUFFT plan (sorted coordinates, kernel tables), its Toeplitz
kernel (cached inside the plan) and the Pipe-Menon density compensation depend on nothing
else, so they are kept in a small least-recently-used cache keyed by a hash of the
coordinates, the image shape and the settings. Arrays handed out are read-only views, so a
caller cannot change what the next caller gets.

Examples
--------
>>> import numpy as np
>>> from dualmode.recon.trajectory_cache import cached_plan
>>> coords = np.random.default_rng(0).uniform(-8, 8, (500, 2))
>>> cached_plan(coords, (16, 16)) is cached_plan(coords.copy(), (16, 16))
True
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from .nufft_plan import DEFAULT_EPS, NUFFTPlan

__all__ = ["cached_dcf", "cached_plan", "clear"]

#: entries kept per kind (plans of a 3D kooshball are tens of MB)
MAX_ENTRIES = 4

_cache: OrderedDict = OrderedDict()


def _key(kind: str, coords, shape, *settings) -> tuple:
    pts = np.ascontiguousarray(coords, dtype=np.float64)
    digest = hashlib.blake2b(pts.tobytes(), digest_size=16)
    digest.update(repr(pts.shape).encode())
    return (kind, digest.hexdigest(), tuple(int(s) for s in np.atleast_1d(shape)), *settings)


def _get_or_make(key: tuple, make):
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = make()
    _cache[key] = value
    kinds = [k for k in _cache if k[0] == key[0]]
    for old in kinds[:-MAX_ENTRIES]:
        del _cache[old]
    return value


def cached_plan(coords, shape, *, eps: float = DEFAULT_EPS, threads: int | None = None) -> NUFFTPlan:
    """The :class:`~dualmode.recon.nufft_plan.NUFFTPlan` of these coordinates (built once)."""
    return _get_or_make(_key("plan", coords, shape, float(eps), threads),
                        lambda: NUFFTPlan(coords, shape, eps=eps, threads=threads))


def cached_dcf(coords, shape, *, n_iter: int = 30, threads: int | None = None) -> np.ndarray:
    """:func:`~dualmode.recon.dcf.pipe_menon_dcf` of these coordinates (computed once), read-only."""
    from .dcf import pipe_menon_dcf

    def make():
        w = pipe_menon_dcf(coords, shape, n_iter=n_iter, plan=cached_plan(coords, shape, eps=1e-3, threads=threads))
        w.setflags(write=False)
        return w

    return _get_or_make(_key("dcf", coords, shape, int(n_iter), threads), make)


def clear() -> None:
    """Forget every cached plan and weight (e.g. to measure a cold start)."""
    _cache.clear()
