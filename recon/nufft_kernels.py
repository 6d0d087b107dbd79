"""Numba kernels of the NUFFT: binning, spreading, interpolation, padding/cropping.

Kernel values are evaluated by Horner's rule from a piecewise polynomial fit of the
"exponential of semicircle" (ES) kernel, as in FINUFFT (Barnett, Magland & af Klinteberg,
SIAM J. Sci. Comput. 41, C479, 2019). For a point at grid position ``u`` the ``w`` grid
indices touched are ``i0 .. i0 + w - 1`` with ``i0 = ceil(u - w/2)``; the weights depend
only on ``s = 2 (i0 - u + w/2) - 1`` in ``[-1, 1)``: ``phi(i0 + i - u) = sum_k c[k, i] s^(p-k)``.

The oversampled grid is centred (k = 0 at index ``n/2``), so only points within ``w/2`` grid
points of the grid edge need the periodic wrap, i.e. those with ``|k_a|`` within
``w / (2 sigma)`` of ``N_a/2`` along some axis (the k-space edge, where trajectories are
sparse); they take a slow path, every other point a branch-free one. Spreading is race-free without
atomics: points are sorted into slabs along grid axis 0 that are at least ``w`` rows thick,
and an even number of them, so slabs of the same parity never write to the same row; even
slabs are spread in parallel, then odd slabs. Interpolation only reads the grid and is
parallel over chunks of sorted points.

Speed notes (numba 0.68, LLVM; measured on AVX2): numba disables LLVM's SLP vectorizer and
fully unrolls loops of compile-time length into scalar code, so the kernel values (Horner's
rule, one vector per power) and the grid rows (``2 w`` floats of a complex row) are written as
explicit LLVM vectors (:mod:`dualmode.recon.nufft_simd`): on the 3D radial benchmark (2 M
points, ``w = 6``, one thread) this took interpolation from 0.33 to 0.14 s and spreading from
0.31 to 0.19 s, against the previous loop-vectorised rows (runtime trip count) and scalar Horner.
Per-point scratch (kernel values, accumulators) lives on the stack (:func:`_stack_pointer`):
it cannot alias the grid.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import nufft_simd as simd


@intrinsic
def _stack_pointer(typingctx, size, dtype):
    """Pointer to ``size`` (a compile-time int) elements of ``dtype`` on the stack (alloca)."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    count = size.literal_value
    elem = dtype.dtype

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(elem), size=count)

    return types.CPointer(elem)(size, dtype), codegen


@nb.njit(cache=True, inline="always")
def _wrap(x, n, inv_n):
    """``x mod n`` in ``[0, n)`` (0 for non-finite ``x``, flagged by the caller)."""
    x -= np.floor(x * inv_n) * n
    if x >= n or x < 0:  # rounding at the top edge, or NaN
        x = 0.0
    return x


@nb.njit(cache=True, inline="always")
def _position(pts, j, scale, offset, n, inv_n, a):
    """Grid position of point ``j`` along axis ``a`` and whether its coordinate is finite."""
    x = pts[j, a] * scale[a] + offset[a]
    return _wrap(x, n[a], inv_n[a]), np.isfinite(x)


@nb.njit(cache=True, inline="always")
def _bin_key(pts, j, scale, offset, n, inv_n, row_bin, ntile):
    """Bin (slab, tile) of point ``j``; -1 if a coordinate is not finite (d = 2 or 3, unrolled)."""
    x0, f0 = _position(pts, j, scale, offset, n, inv_n, 0)
    x1, f1 = _position(pts, j, scale, offset, n, inv_n, 1)
    key = row_bin[0, int(x0)] * ntile[1] + row_bin[1, int(x1)]
    ok = f0 and f1
    if pts.shape[1] == 3:
        x2, f2 = _position(pts, j, scale, offset, n, inv_n, 2)
        key = key * ntile[2] + row_bin[2, int(x2)]
        ok = ok and f2
    return key if ok else -1


@nb.njit(cache=True, parallel=True)
def sort_points(pts, scale, offset, n, nslab, tile, nchunk, keys, perm, u):
    """Grid positions ``u = pts * scale + offset mod n`` in order of slab (axis 0) and tile.

    Parallel counting sort, stable: ``nchunk`` chunks of points are binned in parallel, one
    prefix sum over (bin, chunk) gives every chunk its place in each bin, then the chunks
    are placed in parallel (positions recomputed there: cheaper than storing and re-reading them).

    Parameters
    ----------
    pts : (M, d) float64 coordinates, d = 2 or 3.  scale, offset : (d,) float64.  n : (d,) int64 grid.
    nslab : number of slabs along axis 0.  tile : (d,) int64 tile size along each axis.
    nchunk : number of chunks (at least the number of threads).
    keys : (M,) int32 scratch.
    perm : (M,) int64 output, sorted position -> point index.
    u : (M, d) float64 output, grid positions in ``[0, n)`` in sorted order.

    The large arrays are allocated by the caller with NumPy, which asks the kernel for huge
    pages (a numba allocation of the same size costs about 1 ms per MB in page faults).

    Returns
    -------
    slab_ptr : (nslab + 1,) int64, sorted positions of slab ``s`` are
        ``slab_ptr[s]:slab_ptr[s + 1]``; empty if a coordinate is not finite.
    """
    m, d = pts.shape
    ntile = np.ones(d, np.int64)
    for a in range(1, d):
        ntile[a] = (n[a] + tile[a] - 1) // tile[a]
    per_slab = 1
    for a in range(1, d):
        per_slab *= ntile[a]
    nkey = nslab * per_slab
    counts = np.zeros((nchunk, nkey), np.int64)  # chunk-major: no false sharing
    finite = np.ones(nchunk, np.bool_)
    inv_n = 1.0 / n
    # bin index of every grid row along each axis (a table: no integer division per point)
    row_bin = np.zeros((d, n.max()), np.int64)
    for r in range(n[0]):
        row_bin[0, r] = min(int((r + 0.5) * (nslab / n[0])), nslab - 1)
    for a in range(1, d):
        for r in range(n[a]):
            row_bin[a, r] = r // tile[a]
    size = (m + nchunk - 1) // nchunk
    for ch in nb.prange(nchunk):
        for j in range(ch * size, min(m, (ch + 1) * size)):
            key = _bin_key(pts, j, scale, offset, n, inv_n, row_bin, ntile)
            if key < 0:
                finite[ch] = False
                key = 0
            keys[j] = key
            counts[ch, key] += 1
    if not finite.all():
        return np.empty(0, np.int64)
    slab_ptr = np.empty(nslab + 1, np.int64)
    total = 0
    for k in range(nkey):
        if k % per_slab == 0:
            slab_ptr[k // per_slab] = total
        for ch in range(nchunk):
            c = counts[ch, k]
            counts[ch, k] = total
            total += c
    slab_ptr[nslab] = total
    for ch in nb.prange(nchunk):
        for j in range(ch * size, min(m, (ch + 1) * size)):
            k = keys[j]
            q = counts[ch, k]
            perm[q] = j
            for a in range(d):
                u[q, a] = _position(pts, j, scale, offset, n, inv_n, a)[0]
            counts[ch, k] = q + 1
    return slab_ptr


def padded_width(width: int) -> int:
    """Kernel taps evaluated per axis (a multiple of 4 >= ``width``; the extra taps are zero)."""
    return 4 * -(-width // 4)


@nb.njit(cache=True, inline="always")
def _wrapped(i0, w, n, stride, out):
    """``out[a] = ((i0 + a) mod n) * stride`` for ``a < w`` without integer division."""
    r = i0 % n
    for a in range(w):
        out[a] = r * stride
        r += 1
        if r == n:
            r = 0


@functools.lru_cache(maxsize=None)
def kernels(width: int, degree: int) -> dict:
    """Spreading/interpolation kernels compiled for kernel ``width`` and polynomial ``degree``.

    Both are compile-time constants of the closures (they capture nothing else, which keeps
    numba's on-disk cache valid, since its index hashes the closure variables); the kernel
    values (Horner's rule, one vector per power of ``s``) and the grid rows (``2 width``
    floats) are explicit LLVM vectors (:mod:`dualmode.recon.nufft_simd`). ``coef`` is the
    ``(degree + 1, padded_width(width))`` table. Returns a dict with ``spread2d``,
    ``spread3d``, ``interp2d``, ``interp3d``.
    """
    w = width
    w2 = 2 * width
    wp = padded_width(width)
    deg = degree

    @nb.njit(cache=True, inline="always", fastmath=True)
    def taps(u, coef, ptr):
        """``ptr[i] = phi(i0 + i - u)`` for ``i < w`` (zero up to ``wp``); returns ``i0``."""
        i0 = int(np.ceil(u - 0.5 * w))
        simd.horner(ptr, coef, coef.dtype.type(2.0 * (i0 - u + 0.5 * w) - 1.0), deg, wp)
        return i0

    @nb.njit(cache=True, parallel=True, fastmath=True)
    def spread2d(grid, shape, vals, u, coef, slab_ptr, groups, color):
        """Add ``vals[b, j] phi(u_j - m)`` of sorted points (values in sorted order) to the grid.

        ``grid`` is the flat float view of a C-contiguous complex ``(B, n0, n1)`` array
        (``shape``). Only slabs ``color, color + 2, ...`` are spread; group ``g`` (one thread)
        handles entries ``groups[g]:groups[g + 1]`` of that slab list. The batch loop is the
        outer one (kernel values are recomputed per batch entry: cheaper than the register
        pressure of an inner batch loop).
        """
        nb_, n0, n1 = shape[0], shape[1], shape[2]
        s0 = 2 * n1
        one = coef.dtype.type(1)
        for g in nb.prange(groups.shape[0] - 1):
            p0, p1 = _stack_pointer(wp, coef.dtype), _stack_pointer(wp, coef.dtype)
            pkv = _stack_pointer(w2, coef.dtype)
            k0, k1, kv = nb.carray(p0, wp), nb.carray(p1, wp), nb.carray(pkv, w2)
            r0 = nb.carray(_stack_pointer(w, np.int64), w)
            r1 = nb.carray(_stack_pointer(w, np.int64), w)
            for b in range(nb_):
                gb = b * n0 * s0
                for q in range(groups[g], groups[g + 1]):
                    slab = color + 2 * q
                    for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                        a0 = taps(u[j, 0], coef, p0)
                        a1 = taps(u[j, 1], coef, p1)
                        vr = coef.dtype.type(vals[b, j].real)
                        vi = coef.dtype.type(vals[b, j].imag)
                        for c in range(w):
                            kv[2 * c] = k1[c] * vr
                            kv[2 * c + 1] = k1[c] * vi
                        if a0 >= 0 and a0 + w <= n0 and a1 >= 0 and a1 + w <= n1:
                            simd.axpy_rows(grid, gb + a0 * s0 + 2 * a1, s0, one, p0, pkv, w, w2)
                        else:
                            _wrapped(a0, w, n0, s0, r0)
                            _wrapped(a1, w, n1, 2, r1)
                            for a in range(w):
                                for c in range(w):
                                    i = gb + r0[a] + r1[c]
                                    grid[i] += k0[a] * kv[2 * c]
                                    grid[i + 1] += k0[a] * kv[2 * c + 1]

    @nb.njit(cache=True, parallel=True, fastmath=True)
    def spread3d(grid, shape, vals, u, coef, slab_ptr, groups, color):
        """3D version of :func:`spread2d` (``shape`` = (B, n0, n1, n2))."""
        nb_, n0, n1, n2 = shape[0], shape[1], shape[2], shape[3]
        s1 = 2 * n2
        s0 = n1 * s1
        for g in nb.prange(groups.shape[0] - 1):
            p0, p1 = _stack_pointer(wp, coef.dtype), _stack_pointer(wp, coef.dtype)
            p2, pkv = _stack_pointer(wp, coef.dtype), _stack_pointer(w2, coef.dtype)
            k0, k1, k2 = nb.carray(p0, wp), nb.carray(p1, wp), nb.carray(p2, wp)
            kv = nb.carray(pkv, w2)
            r0 = nb.carray(_stack_pointer(w, np.int64), w)
            r1 = nb.carray(_stack_pointer(w, np.int64), w)
            r2 = nb.carray(_stack_pointer(w, np.int64), w)
            for b in range(nb_):
                gb = b * n0 * s0
                for q in range(groups[g], groups[g + 1]):
                    slab = color + 2 * q
                    for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                        a0 = taps(u[j, 0], coef, p0)
                        a1 = taps(u[j, 1], coef, p1)
                        a2 = taps(u[j, 2], coef, p2)
                        vr = coef.dtype.type(vals[b, j].real)
                        vi = coef.dtype.type(vals[b, j].imag)
                        for e in range(w):
                            kv[2 * e] = k2[e] * vr
                            kv[2 * e + 1] = k2[e] * vi
                        if (a0 >= 0 and a0 + w <= n0 and a1 >= 0 and a1 + w <= n1
                                and a2 >= 0 and a2 + w <= n2):
                            base = gb + a0 * s0 + a1 * s1 + 2 * a2
                            for a in range(w):
                                simd.axpy_rows(grid, base + a * s0, s1, k0[a], p1, pkv, w, w2)
                        else:
                            _wrapped(a0, w, n0, s0, r0)
                            _wrapped(a1, w, n1, s1, r1)
                            _wrapped(a2, w, n2, 2, r2)
                            for a in range(w):
                                for c in range(w):
                                    f = k0[a] * k1[c]
                                    for e in range(w):
                                        i = gb + r0[a] + r1[c] + r2[e]
                                        grid[i] += f * kv[2 * e]
                                        grid[i + 1] += f * kv[2 * e + 1]

    @nb.njit(cache=True, parallel=True, fastmath=True)
    def interp2d(grid, shape, out, u, coef, chunk):
        """``out[b, j] = sum_m grid[b, m] phi(u_j - m)`` for sorted points (sorted order).

        ``grid`` as in :func:`spread2d`; ``out`` complex (B, M); chunks of ``chunk`` points run
        in parallel.
        """
        nb_, n0, n1 = shape[0], shape[1], shape[2]
        s0 = 2 * n1
        m = u.shape[0]
        one = coef.dtype.type(1)
        for ch in nb.prange((m + chunk - 1) // chunk):
            p0, p1 = _stack_pointer(wp, coef.dtype), _stack_pointer(wp, coef.dtype)
            pacc = _stack_pointer(w2, coef.dtype)
            k0, k1, acc = nb.carray(p0, wp), nb.carray(p1, wp), nb.carray(pacc, w2)
            r0 = nb.carray(_stack_pointer(w, np.int64), w)
            r1 = nb.carray(_stack_pointer(w, np.int64), w)
            for b in range(nb_):
                gb = b * n0 * s0
                for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
                    a0 = taps(u[j, 0], coef, p0)
                    a1 = taps(u[j, 1], coef, p1)
                    acc[:] = 0
                    if a0 >= 0 and a0 + w <= n0 and a1 >= 0 and a1 + w <= n1:
                        simd.dot_rows(grid, gb + a0 * s0 + 2 * a1, s0, one, p0, pacc, w, w2)
                    else:
                        _wrapped(a0, w, n0, s0, r0)
                        _wrapped(a1, w, n1, 2, r1)
                        for a in range(w):
                            for c in range(w):
                                i = gb + r0[a] + r1[c]
                                acc[2 * c] += k0[a] * grid[i]
                                acc[2 * c + 1] += k0[a] * grid[i + 1]
                    re = coef.dtype.type(0)
                    im = coef.dtype.type(0)
                    for c in range(w):
                        re += acc[2 * c] * k1[c]
                        im += acc[2 * c + 1] * k1[c]
                    out[b, j] = re + 1j * im

    @nb.njit(cache=True, parallel=True, fastmath=True)
    def interp3d(grid, shape, out, u, coef, chunk):
        """3D version of :func:`interp2d` (``shape`` = (B, n0, n1, n2))."""
        nb_, n0, n1, n2 = shape[0], shape[1], shape[2], shape[3]
        s1 = 2 * n2
        s0 = n1 * s1
        m = u.shape[0]
        for ch in nb.prange((m + chunk - 1) // chunk):
            p0, p1 = _stack_pointer(wp, coef.dtype), _stack_pointer(wp, coef.dtype)
            p2, pacc = _stack_pointer(wp, coef.dtype), _stack_pointer(w2, coef.dtype)
            k0, k1, k2 = nb.carray(p0, wp), nb.carray(p1, wp), nb.carray(p2, wp)
            acc = nb.carray(pacc, w2)
            r0 = nb.carray(_stack_pointer(w, np.int64), w)
            r1 = nb.carray(_stack_pointer(w, np.int64), w)
            r2 = nb.carray(_stack_pointer(w, np.int64), w)
            for b in range(nb_):
                gb = b * n0 * s0
                for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
                    a0 = taps(u[j, 0], coef, p0)
                    a1 = taps(u[j, 1], coef, p1)
                    a2 = taps(u[j, 2], coef, p2)
                    acc[:] = 0
                    if (a0 >= 0 and a0 + w <= n0 and a1 >= 0 and a1 + w <= n1
                            and a2 >= 0 and a2 + w <= n2):
                        base = gb + a0 * s0 + a1 * s1 + 2 * a2
                        for a in range(w):
                            simd.dot_rows(grid, base + a * s0, s1, k0[a], p1, pacc, w, w2)
                    else:
                        _wrapped(a0, w, n0, s0, r0)
                        _wrapped(a1, w, n1, s1, r1)
                        _wrapped(a2, w, n2, 2, r2)
                        for a in range(w):
                            for c in range(w):
                                f = k0[a] * k1[c]
                                for e in range(w):
                                    i = gb + r0[a] + r1[c] + r2[e]
                                    acc[2 * e] += f * grid[i]
                                    acc[2 * e + 1] += f * grid[i + 1]
                    re = coef.dtype.type(0)
                    im = coef.dtype.type(0)
                    for e in range(w):
                        re += acc[2 * e] * k2[e]
                        im += acc[2 * e + 1] * k2[e]
                    out[b, j] = re + 1j * im

    return {"spread2d": spread2d, "spread3d": spread3d, "interp2d": interp2d,
            "interp3d": interp3d}


@nb.njit(cache=True, parallel=True)
def gather(vals, perm, out):
    """``out[b, j] = vals[b, perm[j]]`` (into sorted order; parallel, so misses overlap)."""
    for j in nb.prange(perm.shape[0]):
        p = perm[j]
        for b in range(vals.shape[0]):
            out[b, j] = vals[b, p]


@nb.njit(cache=True, parallel=True)
def scatter(vals, perm, out):
    """``out[b, perm[j]] = vals[b, j]`` (back to the original point order)."""
    for j in nb.prange(perm.shape[0]):
        p = perm[j]
        for b in range(vals.shape[0]):
            out[b, p] = vals[b, j]


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
