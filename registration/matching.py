"""Correspondence-free in-plane matching of optical and MRI particle sets.

Model: the optical z axis is parallel to the z axis of the search frame (the MRI slice
axis, or a candidate optical axis for widefield optics against a 3D MRI, see
:mod:`.orientation`), so every hypothesis is an in-plane rotation ``theta`` (optionally
after a mirror ``y -> -y``) with the known scale (um -> mm) plus a translation. Two
optical particles ``(a, b)`` and two MRI particles ``(p, q)`` with equal in-plane distance
(a pairwise-distance invariant, within ``tol``) define one hypothesis; hypotheses whose
mapped optical centre falls outside the coarse placement are dropped. When there are
many, the most popular ``(theta, t)`` cells are kept (a Hough-style vote), the rest are
ranked by weighted inlier count through a k-d tree, and the best are refined by
alternating mutual-nearest-neighbour matching and a weighted Umeyama fit
(:mod:`.hypotheses`). The best non-mirrored and mirrored solutions are returned for the
caller to choose.

This is RANSAC (Fischler & Bolles, CACM 24:381 (1981)) with exhaustive minimal samples
restricted by the distance invariant; no search over angles.
"""

from __future__ import annotations

import numpy as np

from .hypotheses import Match, SearchSpace, admissible, best_match, verify

__all__ = ["Match", "match_particles", "pair_hypotheses"]


def _pairs(xy, min_dist):
    n = len(xy)
    a, b = np.triu_indices(n, 1)
    d = np.linalg.norm(xy[b] - xy[a], axis=1)
    keep = d > min_dist
    return a[keep], b[keep], d[keep]


def _compatible_pairs(o_xy, m_xy, scale, tol, max_pairs):
    """Index arrays (A, B, P, Q) of optical/MRI pairs with equal length (within ``tol``)."""
    oa, ob, od = _pairs(o_xy * scale, 2 * tol)
    ma, mb, md = _pairs(m_xy, 2 * tol)
    order = np.argsort(md)
    ma, mb, md = ma[order], mb[order], md[order]
    lo = np.searchsorted(md, od - tol)
    counts = np.searchsorted(md, od + tol) - lo
    if counts.sum() > max_pairs:  # keep the longest optical baselines (best-conditioned angles)
        keep = np.argsort(-od)
        sel = keep[np.cumsum(counts[keep]) <= max_pairs]
        oa, ob, lo, counts = oa[sel], ob[sel], lo[sel], counts[sel]
    total = int(counts.sum())
    oi = np.repeat(np.arange(len(oa)), counts)
    mi = lo[oi] + np.arange(total) - (np.cumsum(counts) - counts)[oi]
    A, B, P, Q = oa[oi], ob[oi], ma[mi], mb[mi]
    # both orientations: (A->P, B->Q) and (A->Q, B->P)
    return np.r_[A, A], np.r_[B, B], np.r_[P, Q], np.r_[Q, P]


def pair_hypotheses(o_xy, m_xy, scale, tol, mirror, max_pairs=400_000):
    """All in-plane ``(theta, tx, ty)`` from distance-compatible pairs of pairs.

    Returns ``hyp (H, 3)`` and ``idx (H, 4)`` (optical A, B and MRI P, Q).
    """
    A, B, P, Q = _compatible_pairs(o_xy, m_xy, scale, tol, max_pairs)
    if len(A) == 0:
        return np.zeros((0, 3)), np.zeros((0, 4), int)
    sgn = np.array([1.0, -1.0 if mirror else 1.0])
    v = (o_xy[B] - o_xy[A]) * sgn
    u = m_xy[Q] - m_xy[P]
    theta = np.arctan2(u[:, 1], u[:, 0]) - np.arctan2(v[:, 1], v[:, 0])
    c, s = np.cos(theta), np.sin(theta)
    oc_m = (o_xy[A] + o_xy[B]) / 2 * sgn * scale
    mc = (m_xy[P] + m_xy[Q]) / 2
    tx = mc[:, 0] - (c * oc_m[:, 0] - s * oc_m[:, 1])
    ty = mc[:, 1] - (s * oc_m[:, 0] + c * oc_m[:, 1])
    return np.stack([theta, tx, ty], 1), np.stack([A, B, P, Q], 1)


def _as_affines(hyp, scale, mirror, tz):
    """(H, 3, 3) scaled rotations and (H, 3) translations of in-plane hypotheses."""
    c, s = np.cos(hyp[:, 0]), np.sin(hyp[:, 0])
    sg = -1.0 if mirror else 1.0
    rot = np.zeros((len(hyp), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1] = c, -s * sg
    rot[:, 1, 0], rot[:, 1, 1] = s, c * sg
    rot[:, 2, 2] = 1.0
    trans = np.c_[hyp[:, 1], hyp[:, 2], np.full(len(hyp), tz)]
    return scale * rot, trans


def _vote(hyp, tol, max_verify):
    """Keep the ``max_verify`` hypotheses in the most popular ``(theta, t)`` cells (3 deg, 2 tol)."""
    cells = [(np.round(hyp[:, 0] / np.deg2rad(3.0)) % 120).astype(np.int64),
             np.round(hyp[:, 1] / (2 * tol)).astype(np.int64),
             np.round(hyp[:, 2] / (2 * tol)).astype(np.int64)]
    cells = [c - c.min() for c in cells]
    key = (cells[0] * (cells[1].max() + 1) + cells[1]) * (cells[2].max() + 1) + cells[2]
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    return np.argpartition(-cnt[inv], max_verify)[:max_verify]


def match_particles(
    o: np.ndarray,
    m: np.ndarray,
    space: SearchSpace,
    *,
    wo: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    mirrors: tuple = (False, True),
    n_refine: int = 12,
    max_verify: int = 4000,
    label: str = "in-plane",
) -> dict[bool, Match | None]:
    """Best in-plane match for each mirror state.

    Parameters
    ----------
    o : (N, 3) ndarray
        Optical particles (um).
    m : (M, 3) ndarray
        MRI particles in the search frame, whose z is the optical axis (mm).
    space : SearchSpace
        Tolerance, coarse placement and fit model (``space.planar``: optical points are a
        plane, matched in x, y only; z then comes from the matched MRI particles).
    wo, wm : ndarray, optional
        Per-particle weights (confidence).
    mirrors : tuple of bool
        Mirror states to test (``True``: optical y flipped before the rotation).

    Returns
    -------
    dict
        ``{False: Match | None, True: Match | None}`` (mirror state -> best match).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> o = np.c_[rng.uniform(0, 4000, (20, 2)), np.zeros(20)]
    >>> m = o * 1e-3 + [1.0, 2.0, 0.0]
    >>> best = match_particles(o, m, SearchSpace(tol=0.1, planar=True))[False]
    >>> len(best.pairs)
    20
    """
    o, m = np.asarray(o, float), np.asarray(m, float)
    wo = np.ones(len(o)) if wo is None else np.asarray(wo, float)
    wm = np.ones(len(m)) if wm is None else np.asarray(wm, float)
    out: dict[bool, Match | None] = {False: None, True: None}
    if len(o) < 2 or len(m) < 2:
        return out
    tol_xy = float(space.tol[:2].max())
    tz = float(space.center[2]) if space.center is not None else float(np.median(m[:, 2]))
    for mirror in mirrors:
        hyp, _ = pair_hypotheses(o[:, :2], m[:, :2], space.scale, tol_xy, mirror)
        n_hyp = len(hyp)
        rot, trans = _as_affines(hyp, space.scale, mirror, tz)
        ok = admissible(rot, trans, space)
        hyp, rot, trans = hyp[ok], rot[ok], trans[ok]
        if len(hyp) == 0:
            continue
        if len(hyp) > max_verify:
            keep = _vote(hyp, tol_xy, max_verify)
            rot, trans = rot[keep], trans[keep]
        scores = verify(rot, trans, o, wo, m, space.tol, 2)
        best = best_match(rot, trans, scores, o, m, wo, wm, space, mirror, n_refine=n_refine, label=label)
        if best is not None:
            best.hypotheses = n_hyp
        out[mirror] = best
    return out
