"""Numba kernels of the NUFFT: binning, spreading, interpolation, padding/cropping.

Kernel values are evaluated by Horner's rule from a piecewise polynomial fit of the
"exponential of semicircle" (ES) kernel, as in FINUFFT (Barnett, Magland & af Klinteberg,
SIAM J. Sci. Comput. 41, C479, 2019). For a point at grid position ``u`` the ``w`` grid
indices touched are ``i0 .. i0 + w - 1`` with ``i0 = ceil(u - w/2)``; the weights depend
only on ``s = 2 (i0 - u + w/2) - 1`` in ``[-1, 1)``: ``phi(i0 + i - u) = sum_k c[k, i] s^(p-k)``.

Spreading is race-free without atomics: points are sorted into slabs along grid axis 0
that are at least ``w`` rows thick, and an even number of them, so slabs of the same parity
never write to the same row; even slabs are spread in parallel, then odd slabs.
Interpolation only reads the grid and is parallel over chunks of sorted points.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np


@nb.njit(cache=True)
def sort_points(pts, scale, n, nslab, tile):
    """Grid positions ``u = pts * scale mod n`` and their order by slab (axis 0) and tile.

    Serial counting sort (one pass to count, one to place): cheaper than a parallel region
    for the sizes here. The kernels read ``u[perm[j]]``, so no sorted copy is made.

    Parameters
    ----------
    pts : (M, d) float64 coordinates.  scale : (d,) float64, ``n / N``.  n : (d,) int64 grid.
    nslab : number of slabs along axis 0.  tile : (d,) int64 tile size along each axis.

    Returns
    -------
    perm : (M,) int64, sorted position -> point index (empty if a coordinate is not finite).
    slab_ptr : (nslab + 1,) int64, points of slab ``s`` are ``perm[slab_ptr[s]:slab_ptr[s + 1]]``.
    u : (M, d) float64 grid positions in ``[0, n)``, in the original point order.
    """
    m, d = pts.shape
    ntile = np.ones(d, np.int64)
    for a in range(1, d):
        ntile[a] = (n[a] + tile[a] - 1) // tile[a]
    per_slab = 1
    for a in range(1, d):
        per_slab *= ntile[a]
    nkey = nslab * per_slab
    keys = np.empty(m, np.int32)
    u = np.empty((m, d), np.float64)
    counts = np.zeros(nkey + 1, np.int64)
    inv_n = 1.0 / n
    slab_per_row = nslab / n[0]
    for j in range(m):
        key = 0
        for a in range(d):
            x = pts[j, a] * scale[a]
            if not np.isfinite(x):
                return np.empty(0, np.int64), np.zeros(nslab + 1, np.int64), u
            x -= np.floor(x * inv_n[a]) * n[a]
            if x >= n[a] or x < 0:
                x = 0.0
            u[j, a] = x
            r = int(x)
            if a == 0:
                key = min(int((r + 0.5) * slab_per_row), nslab - 1)
            else:
                key = key * ntile[a] + r // tile[a]
        keys[j] = key
        counts[key + 1] += 1
    for k in range(nkey):
        counts[k + 1] += counts[k]
    slab_ptr = np.empty(nslab + 1, np.int64)
    for s in range(nslab + 1):
        slab_ptr[s] = counts[s * per_slab]
    perm = np.empty(m, np.int64)
    for j in range(m):
        k = keys[j]
        perm[counts[k]] = j
        counts[k] += 1
    return perm, slab_ptr, u


@nb.njit(cache=True, inline="always", fastmath=True)
def _kernel_values(u, coef, ker, w, degree):
    """Fill ``ker[i] = phi(i0 + i - u)`` for ``i < w`` by Horner's rule; return ``i0``."""
    i0 = int(np.ceil(u - 0.5 * w))
    s = ker.dtype.type(2.0 * (i0 - u + 0.5 * w) - 1.0)
    for i in range(w):
        ker[i] = coef[0, i]
    for k in range(1, degree + 1):
        for i in range(w):
            ker[i] = ker[i] * s + coef[k, i]
    return i0


@nb.njit(cache=True, inline="always")
def _rows(i0, w, n, stride, out):
    """``out[a] = ((i0 + a) mod n) * stride`` without integer division (``i0 >= -n``)."""
    r = i0 + n if i0 < 0 else i0
    for a in range(w):
        if r >= n:
            r -= n
        out[a] = r * stride
        r += 1


@nb.njit(cache=True, inline="always", fastmath=True)
def _add_point(grid, base, a_last, w, n_last, wrap, f, kv):
    """``grid[base + 2 m + (0, 1)] += f kv[2 e + (0, 1)]`` for ``m = a_last + e`` (mod n_last)."""
    if wrap:
        for e in range(w):
            i = base + 2 * ((a_last + e) % n_last)
            grid[i] += f * kv[2 * e]
            grid[i + 1] += f * kv[2 * e + 1]
    else:
        i = base + 2 * a_last
        for e in range(2 * w):
            grid[i + e] += f * kv[e]


@nb.njit(cache=True, inline="always", fastmath=True)
def _gather_point(grid, base, a_last, w, n_last, wrap, f, acc):
    """``acc[2 e + (0, 1)] += f grid[base + 2 m + (0, 1)]`` for ``m = a_last + e`` (mod n_last)."""
    if wrap:
        for e in range(w):
            i = base + 2 * ((a_last + e) % n_last)
            acc[2 * e] += f * grid[i]
            acc[2 * e + 1] += f * grid[i + 1]
    else:
        i = base + 2 * a_last
        for e in range(2 * w):
            acc[e] += f * grid[i + e]


@functools.lru_cache(maxsize=None)
def kernels(width: int, degree: int) -> dict:
    """Spreading/interpolation kernels compiled for kernel ``width`` and polynomial ``degree``.

    Both are compile-time constants of the closures (they capture nothing else, which keeps
    numba's on-disk cache valid), so LLVM fully unrolls the inner loops after the helpers
    are inlined: twice as fast as runtime loop bounds.
    Returns a dict with ``spread2d``, ``spread3d``, ``interp2d``, ``interp3d``.
    """
    w = width

    @nb.njit(cache=True, parallel=True, fastmath=True)
    def spread2d(grid, shape, vals, perm, u, coef, slab_ptr, groups, color):
        """Add ``vals[b, perm[j]] phi(u_j - m)`` of sorted points onto the grid.

        ``grid`` is the flat float view of a C-contiguous complex ``(B, n0, n1)`` array
        (``shape``). Only slabs ``color, color + 2, ...`` are spread; group ``g`` (one thread)
        handles entries ``groups[g]:groups[g + 1]`` of that slab list.
        """
        nb_, n0, n1 = shape[0], shape[1], shape[2]
        for g in nb.prange(groups.shape[0] - 1):
            k0 = np.empty(w, coef.dtype)
            k1 = np.empty(w, coef.dtype)
            kv = np.empty(2 * w, coef.dtype)
            r0 = np.empty(w, np.int64)
            for q in range(groups[g], groups[g + 1]):
                slab = color + 2 * q
                for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                    p = perm[j]
                    a0 = _kernel_values(u[p, 0], coef, k0, w, degree)
                    a1 = _kernel_values(u[p, 1], coef, k1, w, degree)
                    _rows(a0, w, n0, 2 * n1, r0)
                    wrap = a1 < 0 or a1 + w > n1
                    for b in range(nb_):
                        vr = coef.dtype.type(vals[b, p].real)
                        vi = coef.dtype.type(vals[b, p].imag)
                        for c in range(w):
                            kv[2 * c] = k1[c] * vr
                            kv[2 * c + 1] = k1[c] * vi
                        bb = b * n0 * 2 * n1
                        for a in range(w):
                            _add_point(grid, bb + r0[a], a1, w, n1, wrap, k0[a], kv)


    @nb.njit(cache=True, parallel=True, fastmath=True)
    def spread3d(grid, shape, vals, perm, u, coef, slab_ptr, groups, color):
        """3D version of :func:`spread2d` (``shape`` = (B, n0, n1, n2))."""
        nb_, n0, n1, n2 = shape[0], shape[1], shape[2], shape[3]
        for g in nb.prange(groups.shape[0] - 1):
            k0 = np.empty(w, coef.dtype)
            k1 = np.empty(w, coef.dtype)
            k2 = np.empty(w, coef.dtype)
            kv = np.empty(2 * w, coef.dtype)
            r0 = np.empty(w, np.int64)
            r1 = np.empty(w, np.int64)
            for q in range(groups[g], groups[g + 1]):
                slab = color + 2 * q
                for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                    p = perm[j]
                    a0 = _kernel_values(u[p, 0], coef, k0, w, degree)
                    a1 = _kernel_values(u[p, 1], coef, k1, w, degree)
                    a2 = _kernel_values(u[p, 2], coef, k2, w, degree)
                    _rows(a0, w, n0, n1 * 2 * n2, r0)
                    _rows(a1, w, n1, 2 * n2, r1)
                    wrap = a2 < 0 or a2 + w > n2
                    for b in range(nb_):
                        vr = coef.dtype.type(vals[b, p].real)
                        vi = coef.dtype.type(vals[b, p].imag)
                        for e in range(w):
                            kv[2 * e] = k2[e] * vr
                            kv[2 * e + 1] = k2[e] * vi
                        bb = b * n0 * n1 * 2 * n2
                        for a in range(w):
                            for c in range(w):
                                _add_point(grid, bb + r0[a] + r1[c], a2, w, n2, wrap,
                                           k0[a] * k1[c], kv)


    @nb.njit(cache=True, parallel=True, fastmath=True)
    def interp2d(grid, shape, out, perm, u, coef, chunk):
        """``out[b, perm[j]] = sum_m grid[b, m] phi(u_j - m)`` for sorted points.

        ``grid`` as in :func:`spread2d`; ``out`` complex (B, M); chunks of ``chunk`` points run
        in parallel.
        """
        nb_, n0, n1 = shape[0], shape[1], shape[2]
        m = perm.shape[0]
        for ch in nb.prange((m + chunk - 1) // chunk):
            k0 = np.empty(w, coef.dtype)
            k1 = np.empty(w, coef.dtype)
            acc = np.empty(2 * w, coef.dtype)
            r0 = np.empty(w, np.int64)
            for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
                p = perm[j]
                a0 = _kernel_values(u[p, 0], coef, k0, w, degree)
                a1 = _kernel_values(u[p, 1], coef, k1, w, degree)
                _rows(a0, w, n0, 2 * n1, r0)
                wrap = a1 < 0 or a1 + w > n1
                for b in range(nb_):
                    acc[:] = 0
                    bb = b * n0 * 2 * n1
                    for a in range(w):
                        _gather_point(grid, bb + r0[a], a1, w, n1, wrap, k0[a], acc)
                    re = coef.dtype.type(0)
                    im = coef.dtype.type(0)
                    for c in range(w):
                        re += acc[2 * c] * k1[c]
                        im += acc[2 * c + 1] * k1[c]
                    out[b, p] = re + 1j * im


    @nb.njit(cache=True, parallel=True, fastmath=True)
    def interp3d(grid, shape, out, perm, u, coef, chunk):
        """3D version of :func:`interp2d` (``shape`` = (B, n0, n1, n2))."""
        nb_, n0, n1, n2 = shape[0], shape[1], shape[2], shape[3]
        m = perm.shape[0]
        for ch in nb.prange((m + chunk - 1) // chunk):
            k0 = np.empty(w, coef.dtype)
            k1 = np.empty(w, coef.dtype)
            k2 = np.empty(w, coef.dtype)
            acc = np.empty(2 * w, coef.dtype)
            r0 = np.empty(w, np.int64)
            r1 = np.empty(w, np.int64)
            for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
                p = perm[j]
                a0 = _kernel_values(u[p, 0], coef, k0, w, degree)
                a1 = _kernel_values(u[p, 1], coef, k1, w, degree)
                a2 = _kernel_values(u[p, 2], coef, k2, w, degree)
                _rows(a0, w, n0, n1 * 2 * n2, r0)
                _rows(a1, w, n1, 2 * n2, r1)
                wrap = a2 < 0 or a2 + w > n2
                for b in range(nb_):
                    acc[:] = 0
                    bb = b * n0 * n1 * 2 * n2
                    for a in range(w):
                        for c in range(w):
                            _gather_point(grid, bb + r0[a] + r1[c], a2, w, n2, wrap,
                                          k0[a] * k1[c], acc)
                    re = coef.dtype.type(0)
                    im = coef.dtype.type(0)
                    for e in range(w):
                        re += acc[2 * e] * k2[e]
                        im += acc[2 * e + 1] * k2[e]
                    out[b, p] = re + 1j * im



    return {"spread2d": spread2d, "spread3d": spread3d, "interp2d": interp2d,
            "interp3d": interp3d}


@nb.njit(cache=True, parallel=True)
def pad2d(img, grid, idx0, idx1, c0, c1):
    """``grid[b, idx0[i], idx1[j]] = img[b, i, j] c0[i] c1[j]`` (deapodise and zero-pad)."""
    nb_, m0, m1 = img.shape
    for q in nb.prange(nb_ * m0):
        b = q // m0
        i = q % m0
        row = grid[b, idx0[i]]
        for j in range(m1):
            row[idx1[j]] = img[b, i, j] * (c0[i] * c1[j])


@nb.njit(cache=True, parallel=True)
def pad3d(img, grid, idx0, idx1, idx2, c0, c1, c2):
    """3D version of :func:`pad2d`."""
    nb_, m0, m1, m2 = img.shape
    for q in nb.prange(nb_ * m0):
        b = q // m0
        i = q % m0
        for j in range(m1):
            cij = c0[i] * c1[j]
            row = grid[b, idx0[i], idx1[j]]
            for k in range(m2):
                row[idx2[k]] = img[b, i, j, k] * (cij * c2[k])


@nb.njit(cache=True, parallel=True)
def crop2d(grid, img, idx0, idx1, c0, c1):
    """``img[b, i, j] = grid[b, idx0[i], idx1[j]] c0[i] c1[j]`` (crop and deapodise)."""
    nb_, m0, m1 = img.shape
    for q in nb.prange(nb_ * m0):
        b = q // m0
        i = q % m0
        row = grid[b, idx0[i]]
        for j in range(m1):
            img[b, i, j] = row[idx1[j]] * (c0[i] * c1[j])


@nb.njit(cache=True, parallel=True)
def crop3d(grid, img, idx0, idx1, idx2, c0, c1, c2):
    """3D version of :func:`crop2d`."""
    nb_, m0, m1, m2 = img.shape
    for q in nb.prange(nb_ * m0):
        b = q // m0
        i = q % m0
        for j in range(m1):
            cij = c0[i] * c1[j]
            row = grid[b, idx0[i], idx1[j]]
            for k in range(m2):
                img[b, i, j, k] = row[idx2[k]] * (cij * c2[k])
