"""Correspondence-free matching of optical and MRI particle sets.

Model: the optical z axis is parallel to the MRI slice axis, so every hypothesis
is an in-plane rotation ``theta`` (optionally after a mirror ``y -> -y``) with the
known scale (um -> mm) plus a translation. Two optical particles ``(a, b)`` and
two MRI particles ``(p, q)`` with equal in-plane distance (a pairwise-distance
invariant, within ``tol``) define one hypothesis; hypotheses whose mapped optical
centre falls outside the coarse placement (``center +- uncertainty``) are dropped.
Surviving hypotheses are ranked by weighted inlier count (nearest MRI particle
within ``tol``), the best ones are refined by alternating mutual-nearest-neighbour
matching and a weighted Umeyama fit (:func:`fit_points`), and the best
non-mirrored and mirrored solutions are returned for the caller to choose.

This is RANSAC (Fischler & Bolles, CACM 24:381 (1981)) with exhaustive
minimal samples restricted by the distance invariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .pointfit import fit_points


@dataclass
class Match:
    transform: np.ndarray  # 4x4 optical um -> MRI frame mm
    pairs: np.ndarray  # (K, 2) optical index, MRI index
    residuals: np.ndarray  # (K,) mm
    score: float  # weighted inlier count
    rms: float
    mirrored: bool
    hypotheses: int


def _pairs(xy, min_dist):
    n = len(xy)
    a, b = np.triu_indices(n, 1)
    d = np.linalg.norm(xy[b] - xy[a], axis=1)
    keep = d > min_dist
    return a[keep], b[keep], d[keep]


def _hypotheses(o_xy, m_xy, scale, tol, mirror, max_pairs=400_000):
    """All (theta, t) from distance-compatible pair-of-pairs, both orientations."""
    oa, ob, od = _pairs(o_xy * scale, 2 * tol)
    ma, mb, md = _pairs(m_xy, 2 * tol)
    order = np.argsort(md)
    ma, mb, md = ma[order], mb[order], md[order]
    lo = np.searchsorted(md, od - tol)
    hi = np.searchsorted(md, od + tol)
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, 3)), np.zeros((0, 4), int)
    if total > max_pairs:  # keep the longest optical baselines (best-conditioned angles)
        keep = np.argsort(-od)
        cum = np.cumsum(counts[keep])
        sel = keep[cum <= max_pairs]
        oa, ob, od, lo, counts = oa[sel], ob[sel], od[sel], lo[sel], counts[sel]
        total = int(counts.sum())
    oi = np.repeat(np.arange(len(oa)), counts)
    starts = np.cumsum(counts) - counts
    mi = lo[oi] + np.arange(total) - starts[oi]
    A, B = oa[oi], ob[oi]
    P, Q = ma[mi], mb[mi]
    # both orientations: (A->P, B->Q) and (A->Q, B->P)
    A = np.concatenate([A, A])
    B = np.concatenate([B, B])
    P, Q = np.concatenate([P, Q]), np.concatenate([Q, P])
    sgn = -1.0 if mirror else 1.0
    v = (o_xy[B] - o_xy[A]) * np.array([1.0, sgn])
    u = m_xy[Q] - m_xy[P]
    theta = np.arctan2(u[:, 1], u[:, 0]) - np.arctan2(v[:, 1], v[:, 0])
    c, s = np.cos(theta), np.sin(theta)
    oc_m = (o_xy[A] + o_xy[B]) / 2 * np.array([1.0, sgn]) * scale
    mc = (m_xy[P] + m_xy[Q]) / 2
    tx = mc[:, 0] - (c * oc_m[:, 0] - s * oc_m[:, 1])
    ty = mc[:, 1] - (s * oc_m[:, 0] + c * oc_m[:, 1])
    return np.stack([theta, tx, ty], 1), np.stack([A, B, P, Q], 1)


def _matrix(theta, tx, ty, tz, scale, mirror):
    rot = np.eye(3)
    rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    if mirror:
        rot = rot @ np.diag([1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = scale * rot
    aff[:3, 3] = [tx, ty, tz]
    return aff


def _mutual_nn(o_mapped, m_pts, tol, dims):
    tree_m = cKDTree(m_pts[:, :dims])
    d_om, i_om = tree_m.query(o_mapped[:, :dims], distance_upper_bound=tol)
    tree_o = cKDTree(o_mapped[:, :dims])
    _, i_mo = tree_o.query(m_pts[:, :dims])
    ok = np.isfinite(d_om)
    idx = np.flatnonzero(ok)
    mutual = idx[i_mo[i_om[idx]] == idx]
    return np.stack([mutual, i_om[mutual]], 1), d_om[mutual]


def refine_match(aff, o, m, wo, wm, tol, mirror, planar, model="rigid", iterations=8):
    """Alternate mutual-nearest-neighbour matching and weighted fitting from ``aff``."""
    scale = float(np.cbrt(abs(np.linalg.det(aff[:3, :3]))))
    dims = 2 if planar else 3
    pairs = np.zeros((0, 2), int)
    for it in range(iterations):
        mapped = o @ aff[:3, :3].T + aff[:3, 3]
        new_pairs, _ = _mutual_nn(mapped, m, tol, dims if it else 2)
        if len(new_pairs) < (2 if planar else 3):
            break
        w = wo[new_pairs[:, 0]] * wm[new_pairs[:, 1]]
        aff, _ = fit_points(o[new_pairs[:, 0]], m[new_pairs[:, 1]], w, model=model, scale=scale,
                            mirror=mirror, planar=planar)
        if len(new_pairs) == len(pairs) and np.array_equal(new_pairs, pairs):
            break
        pairs = new_pairs
    mapped = o @ aff[:3, :3].T + aff[:3, 3]
    pairs, _ = _mutual_nn(mapped, m, tol, dims)
    res = mapped[pairs[:, 0], :dims] - m[pairs[:, 1], :dims]
    dist = np.linalg.norm(res, axis=1)
    w = wo[pairs[:, 0]] * wm[pairs[:, 1]] if len(pairs) else np.zeros(0)
    score = float(w.sum())
    rms = float(np.sqrt((w * dist**2).sum() / w.sum())) if len(pairs) else np.inf
    return aff, pairs, dist, score, rms


def match_particles(
    o: np.ndarray,
    m: np.ndarray,
    *,
    wo: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    scale: float = 1e-3,
    tol: float = 0.3,
    center: np.ndarray | None = None,
    optical_center: np.ndarray | None = None,
    uncertainty: float = np.inf,
    mirrors: tuple = (False, True),
    planar: bool = True,
    model: str = "rigid",
    n_refine: int = 12,
    max_verify: int = 4000,
) -> dict[bool, Match | None]:
    """Best match for each mirror state.

    Parameters
    ----------
    o : (N, 3) ndarray
        Optical particles (um).
    m : (M, 3) ndarray
        MRI particles in a frame whose z is the optical axis (mm, e.g. the MRI grid frame).
    wo, wm : ndarray, optional
        Per-particle weights (confidence).
    tol : float
        Distance tolerance (mm) for the pair invariant and for inliers.
    center, optical_center, uncertainty
        Coarse placement: ``optical_center`` (um) maps within ``uncertainty`` (mm,
        in-plane) of ``center`` (mm, MRI frame); ``center[2]`` places z for planar data.
    mirrors : tuple of bool
        Mirror states to test (``True``: optical y flipped before the rotation).
    planar : bool
        Optical points are a plane (widefield): z comes from the MRI particles.

    Returns
    -------
    dict
        ``{False: Match | None, True: Match | None}`` (mirror state -> best match).
    """
    o = np.asarray(o, float)
    m = np.asarray(m, float)
    wo = np.ones(len(o)) if wo is None else np.asarray(wo, float)
    wm = np.ones(len(m)) if wm is None else np.asarray(wm, float)
    out: dict[bool, Match | None] = {False: None, True: None}
    if len(o) < 2 or len(m) < 2:
        return out
    tree = cKDTree(m[:, :2])
    for mirror in mirrors:
        hyp, idx = _hypotheses(o[:, :2], m[:, :2], scale, tol, mirror)
        n_hyp = len(hyp)
        if n_hyp == 0:
            continue
        sgn = np.array([1.0, -1.0 if mirror else 1.0])
        if center is not None and np.isfinite(uncertainty):
            oc = optical_center[:2] * sgn * scale
            c, s = np.cos(hyp[:, 0]), np.sin(hyp[:, 0])
            mx = c * oc[0] - s * oc[1] + hyp[:, 1]
            my = s * oc[0] + c * oc[1] + hyp[:, 2]
            ok = np.hypot(mx - center[0], my - center[1]) <= uncertainty + tol
            hyp, idx = hyp[ok], idx[ok]
        if len(hyp) == 0:
            continue
        if len(hyp) > max_verify:  # vote: keep hypotheses in the most popular (theta, t) cells
            cells = [(np.round(hyp[:, 0] / np.deg2rad(3.0)) % 120).astype(np.int64),
                     np.round(hyp[:, 1] / (2 * tol)).astype(np.int64),
                     np.round(hyp[:, 2] / (2 * tol)).astype(np.int64)]
            cells = [c - c.min() for c in cells]
            key = (cells[0] * (cells[1].max() + 1) + cells[1]) * (cells[2].max() + 1) + cells[2]
            _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
            votes = cnt[inv]
            rank = np.argpartition(-votes, max_verify)[:max_verify]
            hyp, idx = hyp[rank], idx[rank]
        # verify: weighted inlier count of all optical points (in-plane)
        c, s = np.cos(hyp[:, 0]), np.sin(hyp[:, 0])
        ox = o[:, 0] * scale
        oy = o[:, 1] * scale * sgn[1]
        scores = np.zeros(len(hyp))
        chunk = max(1, 2_000_000 // max(len(o), 1))
        for start in range(0, len(hyp), chunk):
            sl = slice(start, start + chunk)
            px = c[sl, None] * ox - s[sl, None] * oy + hyp[sl, 1, None]
            py = s[sl, None] * ox + c[sl, None] * oy + hyp[sl, 2, None]
            d, _ = tree.query(np.stack([px.ravel(), py.ravel()], 1), distance_upper_bound=tol)
            scores[sl] = (np.isfinite(d).reshape(px.shape) * wo).sum(1)
        best = None
        tried = []
        for h in np.argsort(-scores, kind="stable"):
            if len(tried) >= n_refine:
                break
            th, tx, ty = hyp[h]
            if any(abs(np.angle(np.exp(1j * (th - a)))) < np.deg2rad(1.0) and np.hypot(tx - b, ty - cc) < tol
                   for a, b, cc in tried):
                continue
            tried.append((th, tx, ty))
            A, B, P, Q = idx[h]
            tz = (center[2] if center is not None and planar else
                  np.mean(m[[P, Q], 2]) - scale * np.mean(o[[A, B], 2]))
            aff = _matrix(th, tx, ty, tz, scale, mirror)
            if planar:  # z placement from the MRI particles in the optical field
                mapped = o @ aff[:3, :3].T + aff[:3, 3]
                pr, _ = _mutual_nn(mapped, m, tol, 2)
                if len(pr):
                    aff[2, 3] = np.median(m[pr[:, 1], 2])
            aff, pairs, dist, score, rms = refine_match(aff, o, m, wo, wm, tol, mirror, planar, model)
            if len(pairs) < 2:
                continue
            cand = Match(aff, pairs, dist, score, rms, mirror, n_hyp)
            if best is None or (score, -rms) > (best.score, -best.rms):
                best = cand
        out[mirror] = best
    return out
