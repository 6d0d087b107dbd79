"""Correspondence-free matching of a 3D optical stack to 3D MRI particles in any orientation.

The three side lengths of a triangle are invariant under every rotation and reflection,
so a triangle of optical particles can only correspond to an MRI triangle with the same
sides (within the tolerance), and a fourth particle must sit at the right distances from
all three (a congruent tetrahedron, as in 4-points congruent sets, Aiger et al., SIGGRAPH
2008). For a few dozen well-conditioned optical *base* triangles
(drawn from the most confident particles, weighted by confidence), the congruent MRI
triangles are found from the MRI distance matrix: ordered MRI pairs ``(p, q)`` with
``|pq| ~ |ab|`` (sorted distances, binary search), then the third vertices ``r`` with
``|pr| ~ |ac|`` and ``|qr| ~ |bc|``. Each congruence gives two exact hypotheses, a proper
rotation and a rotoreflection (three points are coplanar; the mirror through their plane
fits them equally), computed in closed form by a batched Kabsch/Umeyama fit. Hypotheses
outside the coarse placement (centre ball, orientation cone) are dropped, the rest scored
by the weighted inlier count of all optical particles through a k-d tree, and the best
refined (:mod:`.hypotheses`). The full rotation group O(3) is covered without any search
over angles; the cost grows with the number of congruent triangles, not with a grid.

References: RANSAC (Fischler & Bolles, CACM 24:381 (1981)); geometric hashing of point
triplets (Lamdan & Wolfson, ICCV 1988); the closed-form fit (Umeyama, IEEE TPAMI 13:376
(1991)).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .hypotheses import Match, SearchSpace, admissible, best_match, verify

__all__ = ["match_particles_3d", "base_triangles", "congruent_triangles"]


def base_triangles(o_mm: np.ndarray, wo: np.ndarray, tol: float, *, n_bases: int = 60,
                   top: int = 24, seed: int = 0) -> np.ndarray:
    """Up to ``n_bases`` optical triangles ``(a, b, c)`` (indices), well conditioned.

    Vertices come from the ``top`` most confident particles; sides must exceed ``4 tol``
    and every height ``2 tol`` (a thin triangle fixes the rotation about its long side
    poorly). Drawn without replacement with probability proportional to the product of
    the vertex weights (deterministic ``seed``).
    """
    idx = np.argsort(-wo, kind="stable")[:top]
    if len(idx) < 3:
        return np.zeros((0, 3), int)
    tri = idx[np.array(list(combinations(range(len(idx)), 3)), int)]
    p = o_mm[tri]
    sides = np.linalg.norm(p - p[:, [1, 2, 0]], axis=2)
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    height = 2 * area / sides.max(1)
    ok = (sides.min(1) > 4 * tol) & (height > 2 * tol)
    tri = tri[ok]
    if len(tri) <= n_bases:
        return tri
    w = np.prod(wo[tri], axis=1)
    rng = np.random.default_rng(seed)
    return tri[rng.choice(len(tri), n_bases, replace=False, p=w / w.sum())]


def _fourth_points(o_mm, wo, bases, k=2):
    """For each base, the ``k`` most confident other optical particles (tetrahedron checks)."""
    order = np.argsort(-wo, kind="stable")[:k + 3].tolist()  # the k best are among the k + 3 best
    out = np.zeros((len(bases), k), int)
    for n, tri in enumerate(bases.tolist()):
        out[n] = [i for i in order if i not in tri][:k]
    return out


def congruent_triangles(o_mm: np.ndarray, m: np.ndarray, bases: np.ndarray, tol, fourth=None,
                        max_per_base: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """All MRI vertex triples ``(p, q, r)`` congruent to each base ``(a, b, c)`` within ``tol``.

    ``tol`` is per axis of the MRI frame (3,) or one number: the tolerance of a distance
    is that of its direction, ``sqrt(sum_i (u_i tol_i)^2)`` for the unit vector ``u``
    between the two MRI particles (anisotropic voxels).

    With ``fourth`` (``(B, k)`` optical indices per base), a triple is kept only if some MRI
    particle has the right distances to ``p, q, r`` for at least one of them (a congruent
    tetrahedron): random triangles rarely pass, true ones do unless all ``k`` points are
    missing from the MRI. Returns ``base_index (H,)`` and ``mri (H, 3)``.
    """
    diff = m[:, None] - m[None]
    dist = np.linalg.norm(diff, axis=2)
    tol3 = np.broadcast_to(np.asarray(tol, float), (3,))
    tdir = np.sqrt(((diff / np.maximum(dist, 1e-12)[..., None]) ** 2) @ tol3**2)
    iu, ju = np.triu_indices(len(m), 1)
    d = dist[iu, ju]
    order = np.argsort(d)
    iu, ju, d = iu[order], ju[order], d[order]
    tmax = float(tol3.max())
    out_b, out_m = [], []
    for n, (a, b, c) in enumerate(bases):
        dab, dac, dbc = (np.linalg.norm(o_mm[x] - o_mm[y]) for x, y in ((a, b), (a, c), (b, c)))
        lo, hi = np.searchsorted(d, [dab - tmax, dab + tmax])
        P = np.r_[iu[lo:hi], ju[lo:hi]]
        Q = np.r_[ju[lo:hi], iu[lo:hi]]
        ok = np.abs(dist[P, Q] - dab) <= tdir[P, Q]
        P, Q = P[ok], Q[ok]
        i, r = np.nonzero((np.abs(dist[P] - dac) <= tdir[P]) & (np.abs(dist[Q] - dbc) <= tdir[Q]))
        if fourth is not None and len(i):
            keep = np.zeros(len(i), bool)
            for f in fourth[n]:
                da, db, dc = (np.linalg.norm(o_mm[f] - o_mm[x]) for x in (a, b, c))
                keep |= ((np.abs(dist[P[i]] - da) <= tdir[P[i]]) & (np.abs(dist[Q[i]] - db) <= tdir[Q[i]])
                         & (np.abs(dist[r] - dc) <= tdir[r])).any(1)
            i, r = i[keep], r[keep]
        if len(i) > max_per_base:
            i, r = i[:max_per_base], r[:max_per_base]
        out_b.append(np.full(len(i), n))
        out_m.append(np.stack([P[i], Q[i], r], 1))
    if not out_b:
        return np.zeros(0, int), np.zeros((0, 3), int)
    return np.concatenate(out_b), np.concatenate(out_m).reshape(-1, 3)


def kabsch_batch(src: np.ndarray, dst: np.ndarray, scale: float, det_sign: float):
    """Closed-form fits ``dst ~ scale R src + t`` of (H, K, 3) point sets with ``det R = det_sign``."""
    s0, d0 = src.mean(1), dst.mean(1)
    cov = np.einsum("hki,hkj->hij", dst - d0[:, None], src - s0[:, None])
    u, _, vt = np.linalg.svd(cov)
    fix = np.ones((len(src), 3))
    fix[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt) * det_sign)
    fix[fix[:, 2] == 0, 2] = 1.0
    rot = np.einsum("hij,hj,hjk->hik", u, fix, vt) * scale
    trans = d0 - np.einsum("hij,hj->hi", rot, s0)
    return rot, trans


def _prescore(rot, trans, o, wo, m, tol, max_verify):
    """Keep the ``max_verify`` best hypotheses scored on the 12 most confident particles."""
    if len(rot) <= max_verify:
        return np.arange(len(rot))
    top = np.argsort(-wo, kind="stable")[:12]
    s = verify(rot, trans, o[top], wo[top], m, tol, 3)
    return np.argpartition(-s, max_verify)[:max_verify]


def match_particles_3d(
    o: np.ndarray,
    m: np.ndarray,
    space: SearchSpace,
    *,
    wo: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    mirrors: tuple = (False, True),
    n_bases: int = 60,
    n_refine: int = 12,
    max_verify: int = 3000,
) -> dict[bool, Match | None]:
    """Best 3D match for each handedness over all rotations (and rotoreflections).

    Parameters
    ----------
    o : (N, 3) ndarray
        Optical particles (um, a z-stack).
    m : (M, 3) ndarray
        MRI particles in the search frame (mm, e.g. the MRI grid frame).
    space : SearchSpace
        Tolerance per axis, coarse placement and orientation prior, fit model.
    wo, wm : ndarray, optional
        Per-particle weights (confidence).
    mirrors : tuple of bool
        Handedness to test (``True``: ``det R = -1``, any reflection).
    n_bases : int
        Optical base triangles tried (each with all congruent MRI triangles).

    Returns
    -------
    dict
        ``{False: Match | None, True: Match | None}``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.spatial.transform import Rotation
    >>> rng = np.random.default_rng(1)
    >>> o = rng.uniform(0, 3000, (25, 3))
    >>> rot = Rotation.from_euler("xyz", [30, 140, -60], degrees=True).as_matrix()
    >>> m = o @ rot.T * 1e-3 + 5.0
    >>> best = match_particles_3d(o, m, SearchSpace(tol=0.1))[False]
    >>> len(best.pairs), bool(np.allclose(best.transform[:3, :3], 1e-3 * rot))
    (25, True)
    """
    o, m = np.asarray(o, float), np.asarray(m, float)
    wo = np.ones(len(o)) if wo is None else np.asarray(wo, float)
    wm = np.ones(len(m)) if wm is None else np.asarray(wm, float)
    out: dict[bool, Match | None] = {False: None, True: None}
    if len(o) < 3 or len(m) < 3:
        return out
    tol = float(space.tol.max())
    o_mm = o * space.scale
    bases = base_triangles(o_mm, wo, tol, n_bases=n_bases)
    fourth = _fourth_points(o_mm, wo, bases) if len(o) >= 6 else None
    bi, mt = congruent_triangles(o_mm, m, bases, space.tol, fourth)
    for mirror in mirrors:
        rot, trans = kabsch_batch(o[bases[bi]], m[mt], space.scale, -1.0 if mirror else 1.0)
        ok = admissible(rot, trans, space)
        rot, trans = rot[ok], trans[ok]
        if len(rot) == 0:
            continue
        keep = _prescore(rot, trans, o, wo, m, space.tol, max_verify)
        rot, trans = rot[keep], trans[keep]
        scores = verify(rot, trans, o, wo, m, space.tol, 3)
        best = best_match(rot, trans, scores, o, m, wo, wm, space, mirror, n_refine=n_refine,
                          label="SO(3) triplets" + (" mirrored" if mirror else ""))
        if best is not None:
            best.hypotheses = len(bi)
        out[mirror] = best
    return out
