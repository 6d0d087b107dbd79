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

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always", fastmath=True)
def _eval_kernel(s, coef, ker):
    """``ker[i] = sum_k coef[k, i] s^(deg-k)`` (Horner) for ``i < coef.shape[1]``."""
    deg = coef.shape[0]
    for i in range(coef.shape[1]):
        acc = coef[0, i]
        for k in range(1, deg):
            acc = acc * s + coef[k, i]
        ker[i] = acc


@nb.njit(cache=True)
def bin_sort(u, n, nslab, tile):
    """Counting sort of points by (slab along axis 0, tiles along the other axes).

    Parameters
    ----------
    u : (M, d) float64, grid positions in ``[0, n)``.
    n : (d,) int64, grid size.  nslab : number of slabs along axis 0.  tile : (d,) tile size.

    Returns
    -------
    perm : (M,) int64, sorted position -> original point index.
    slab_ptr : (nslab + 1,) int64, sorted points of slab ``s`` are ``slab_ptr[s]:slab_ptr[s+1]``.
    """
    m, d = u.shape
    ntile = np.ones(d, np.int64)
    for a in range(1, d):
        ntile[a] = (n[a] + tile[a] - 1) // tile[a]
    per_slab = 1
    for a in range(1, d):
        per_slab *= ntile[a]
    nkey = nslab * per_slab
    keys = np.empty(m, np.int64)
    counts = np.zeros(nkey + 1, np.int64)
    for j in range(m):
        r0 = min(int(u[j, 0]), n[0] - 1)
        key = (r0 * nslab) // n[0]
        for a in range(1, d):
            r = min(int(u[j, a]), n[a] - 1)
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
    return perm, slab_ptr


@nb.njit(cache=True, parallel=True, fastmath=True)
def spread2d(grid, vals, perm, i0, s, coef, slab_ptr, groups, color):
    """Add ``vals[b, perm[j]] * phi(.)`` of sorted points onto ``grid[b]`` (B, n0, n1).

    Only slabs ``color, color + 2, ...``; the group ``g`` handles the slab list entries
    ``groups[g]:groups[g+1]`` (balanced point counts).
    """
    nb_, n0, n1 = grid.shape
    w = coef.shape[1]
    for g in nb.prange(groups.shape[0] - 1):
        k0 = np.empty(w, coef.dtype)
        k1 = np.empty(w, coef.dtype)
        r0 = np.empty(w, np.int64)
        for q in range(groups[g], groups[g + 1]):
            slab = color + 2 * q
            for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                p = perm[j]
                _eval_kernel(s[j, 0], coef, k0)
                _eval_kernel(s[j, 1], coef, k1)
                a0 = i0[j, 0]
                a1 = i0[j, 1]
                for a in range(w):
                    r0[a] = (a0 + a) % n0
                wrap = a1 < 0 or a1 + w > n1
                for b in range(nb_):
                    v = vals[b, p]
                    for a in range(w):
                        va = v * k0[a]
                        row = grid[b, r0[a]]
                        if wrap:
                            for c in range(w):
                                row[(a1 + c) % n1] += va * k1[c]
                        else:
                            for c in range(w):
                                row[a1 + c] += va * k1[c]


@nb.njit(cache=True, parallel=True, fastmath=True)
def spread3d(grid, vals, perm, i0, s, coef, slab_ptr, groups, color):
    """3D version of :func:`spread2d` on ``grid`` (B, n0, n1, n2)."""
    nb_, n0, n1, n2 = grid.shape
    w = coef.shape[1]
    for g in nb.prange(groups.shape[0] - 1):
        k0 = np.empty(w, coef.dtype)
        k1 = np.empty(w, coef.dtype)
        k2 = np.empty(w, coef.dtype)
        r0 = np.empty(w, np.int64)
        r1 = np.empty(w, np.int64)
        for q in range(groups[g], groups[g + 1]):
            slab = color + 2 * q
            for j in range(slab_ptr[slab], slab_ptr[slab + 1]):
                p = perm[j]
                _eval_kernel(s[j, 0], coef, k0)
                _eval_kernel(s[j, 1], coef, k1)
                _eval_kernel(s[j, 2], coef, k2)
                a0 = i0[j, 0]
                a1 = i0[j, 1]
                a2 = i0[j, 2]
                for a in range(w):
                    r0[a] = (a0 + a) % n0
                    r1[a] = (a1 + a) % n1
                wrap = a2 < 0 or a2 + w > n2
                for b in range(nb_):
                    v = vals[b, p]
                    for a in range(w):
                        va = v * k0[a]
                        for c in range(w):
                            vac = va * k1[c]
                            row = grid[b, r0[a], r1[c]]
                            if wrap:
                                for e in range(w):
                                    row[(a2 + e) % n2] += vac * k2[e]
                            else:
                                for e in range(w):
                                    row[a2 + e] += vac * k2[e]


@nb.njit(cache=True, parallel=True, fastmath=True)
def interp2d(grid, out, perm, i0, s, coef, chunk):
    """``out[b, perm[j]] = sum grid[b, .] phi(.)`` over the kernel support of sorted point j."""
    nb_, n0, n1 = grid.shape
    m = perm.shape[0]
    w = coef.shape[1]
    zero = out.dtype.type(0)
    for ch in nb.prange((m + chunk - 1) // chunk):
        k0 = np.empty(w, coef.dtype)
        k1 = np.empty(w, coef.dtype)
        r0 = np.empty(w, np.int64)
        for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
            p = perm[j]
            _eval_kernel(s[j, 0], coef, k0)
            _eval_kernel(s[j, 1], coef, k1)
            a0 = i0[j, 0]
            a1 = i0[j, 1]
            for a in range(w):
                r0[a] = (a0 + a) % n0
            wrap = a1 < 0 or a1 + w > n1
            for b in range(nb_):
                acc = zero
                for a in range(w):
                    row = grid[b, r0[a]]
                    racc = zero
                    if wrap:
                        for c in range(w):
                            racc += row[(a1 + c) % n1] * k1[c]
                    else:
                        for c in range(w):
                            racc += row[a1 + c] * k1[c]
                    acc += racc * k0[a]
                out[b, p] = acc


@nb.njit(cache=True, parallel=True, fastmath=True)
def interp3d(grid, out, perm, i0, s, coef, chunk):
    """3D version of :func:`interp2d` on ``grid`` (B, n0, n1, n2)."""
    nb_, n0, n1, n2 = grid.shape
    m = perm.shape[0]
    w = coef.shape[1]
    zero = out.dtype.type(0)
    for ch in nb.prange((m + chunk - 1) // chunk):
        k0 = np.empty(w, coef.dtype)
        k1 = np.empty(w, coef.dtype)
        k2 = np.empty(w, coef.dtype)
        r0 = np.empty(w, np.int64)
        r1 = np.empty(w, np.int64)
        for j in range(ch * chunk, min(m, (ch + 1) * chunk)):
            p = perm[j]
            _eval_kernel(s[j, 0], coef, k0)
            _eval_kernel(s[j, 1], coef, k1)
            _eval_kernel(s[j, 2], coef, k2)
            a0 = i0[j, 0]
            a1 = i0[j, 1]
            a2 = i0[j, 2]
            for a in range(w):
                r0[a] = (a0 + a) % n0
                r1[a] = (a1 + a) % n1
            wrap = a2 < 0 or a2 + w > n2
            for b in range(nb_):
                acc = zero
                for a in range(w):
                    pacc = zero
                    for c in range(w):
                        row = grid[b, r0[a], r1[c]]
                        racc = zero
                        if wrap:
                            for e in range(w):
                                racc += row[(a2 + e) % n2] * k2[e]
                        else:
                            for e in range(w):
                                racc += row[a2 + e] * k2[e]
                        pacc += racc * k1[c]
                    acc += pacc * k0[a]
                out[b, p] = acc


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
