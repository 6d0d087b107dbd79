"""Shared machinery of the correspondence-free matchers: the search space, hypothesis
verification (weighted inlier count through a k-d tree), and refinement of the best
hypotheses by alternating mutual-nearest-neighbour matching and a weighted Umeyama fit.

A hypothesis is a 4x4 affine mapping optical um to the *search frame* (mm): the MRI grid
frame, or for widefield optics a rotation of it whose z is the candidate optical axis.
The tolerance is per axis of that frame (anisotropic MRI voxels); distances are compared
after dividing each axis by its tolerance, so "within tolerance" is a unit ball.

This is the verification and refinement half of RANSAC (Fischler & Bolles, "Random sample
consensus", CACM 24(6):381-395 (1981)); the fit is Umeyama's (IEEE TPAMI 13(4):376-380
(1991)), see :mod:`.pointfit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from .pointfit import fit_points
from .significance import match_significance


@dataclass(repr=False)
class Match:
    """Best hypothesis of one search after refinement (transform: optical um -> search frame mm)."""

    transform: np.ndarray
    pairs: np.ndarray  # (K, 2) optical index, MRI index
    residuals: np.ndarray  # (K,) mm
    score: float  # weighted inlier count
    rms: float
    mirrored: bool
    hypotheses: int
    label: str = ""
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))  # search frame = frame @ grid frame
    significance: float = 0.0  # -log10 chance probability (:mod:`.significance`)

    def __repr__(self) -> str:
        return (f"Match({self.label or 'search'}, mirrored={self.mirrored}, matched={len(self.pairs)}, "
                f"rms={self.rms:.3g} mm, significance={self.significance:.1f}, hypotheses={self.hypotheses})")


@dataclass
class SearchSpace:
    """What a matcher may consider (all in the search frame).

    ``tol`` per axis (mm); ``scale`` the nominal um -> mm factor; ``center`` (mm) and
    ``uncertainty`` (mm, a ball) the coarse position of ``optical_center`` (um);
    ``prior`` the coarse orientation (3x3, optical axes as columns, unit length) with
    ``prior_deg`` its angular uncertainty; ``model`` and ``scale_bounds`` the fit.
    """

    tol: np.ndarray
    scale: float = 1e-3
    center: np.ndarray | None = None
    optical_center: np.ndarray | None = None
    uncertainty: float = np.inf
    prior: np.ndarray | None = None
    prior_deg: float = 180.0
    model: str = "rigid"
    scale_bounds: tuple[float, float] | None = None
    planar: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tol = np.broadcast_to(np.asarray(self.tol, float), (3,)).copy()


#: :func:`mutual_nn` compares every pair up to this many (faster than two k-d trees below ~60 points per side)
BRUTE_FORCE_PAIRS = 4096


def mutual_nn(mapped: np.ndarray, m: np.ndarray, tol: np.ndarray, dims: int):
    """Mutual nearest neighbours within ``tol`` (per axis): ``(pairs (K, 2), distances (K,) mm)``."""
    t = tol[:dims]
    a, b = mapped[:, :dims] / t, m[:, :dims] / t
    if 0 < len(a) * len(b) <= BRUTE_FORCE_PAIRS:  # a few dozen points: the distance matrix beats two trees
        d2 = np.square(a[:, None, :] - b[None, :, :]).sum(axis=2)
        i_om, i_mo = d2.argmin(axis=1), d2.argmin(axis=0)
        idx = np.flatnonzero(d2[np.arange(len(a)), i_om] < 1.0)  # cKDTree's distance_upper_bound=1 is strict
    else:
        d_om, i_om = cKDTree(b).query(a, distance_upper_bound=1.0)
        _, i_mo = cKDTree(a).query(b)
        idx = np.flatnonzero(np.isfinite(d_om))
    mutual = idx[i_mo[i_om[idx]] == idx]
    dist = np.linalg.norm(mapped[mutual, :dims] - m[i_om[mutual], :dims], axis=1)
    return np.stack([mutual, i_om[mutual]], 1).reshape(-1, 2), dist


def verify(rot: np.ndarray, trans: np.ndarray, o: np.ndarray, wo: np.ndarray, m: np.ndarray,
           tol: np.ndarray, dims: int) -> np.ndarray:
    """Weighted inlier count of every hypothesis ``x -> rot @ x + trans`` (rot (H, 3, 3), trans (H, 3))."""
    t = tol[:dims]
    tree = cKDTree(m[:, :dims] / t)
    scores = np.zeros(len(rot))
    chunk = max(1, 1_000_000 // max(len(o), 1))
    for start in range(0, len(rot), chunk):
        sl = slice(start, start + chunk)
        mapped = np.einsum("hij,nj->hni", rot[sl, :dims], o) + trans[sl, None, :dims]
        d, _ = tree.query((mapped / t).reshape(-1, dims), distance_upper_bound=1.0)
        scores[sl] = (np.isfinite(d).reshape(mapped.shape[:2]) * wo).sum(1)
    return scores


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (deg) of ``a^T b`` for (.., 3, 3) orthogonal matrices of equal handedness."""
    tr = np.einsum("...ji,...ji->...", a, b)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


def admissible(rot: np.ndarray, trans: np.ndarray, space: SearchSpace) -> np.ndarray:
    """Hypotheses compatible with the coarse placement (centre ball, orientation cone)."""
    ok = np.ones(len(rot), bool)
    tmax = float(space.tol[:2].max() if space.planar else space.tol.max())
    if space.center is not None and np.isfinite(space.uncertainty):
        oc = np.asarray(space.optical_center, float)
        mapped = np.einsum("hij,j->hi", rot, oc) + trans
        d = mapped - space.center
        if space.planar:
            d = d[:, :2]
        ok &= np.linalg.norm(d, axis=1) <= space.uncertainty + tmax
    if space.prior is not None and space.prior_deg < 180.0:
        unit = rot / space.scale
        same = np.sign(np.linalg.det(unit)) == np.sign(np.linalg.det(space.prior))
        ok &= same & (rotation_angle_deg(space.prior, unit) <= space.prior_deg)
    return ok


def refine_match(aff, o, m, wo, wm, space: SearchSpace, mirror: bool, iterations: int = 8):
    """Alternate mutual-nearest-neighbour matching and the weighted fit from ``aff``.

    Returns ``(transform, pairs, distances, score, rms)``.
    """
    dims = 2 if space.planar else 3
    need = 2 if space.planar else 3
    pairs = np.zeros((0, 2), int)
    for _ in range(iterations):
        mapped = o @ aff[:3, :3].T + aff[:3, 3]
        new_pairs, _ = mutual_nn(mapped, m, space.tol, dims)
        if len(new_pairs) < need:
            break
        w = wo[new_pairs[:, 0]] * wm[new_pairs[:, 1]]
        model = space.model if len(new_pairs) >= need + 2 else "rigid"
        aff, _ = fit_points(o[new_pairs[:, 0]], m[new_pairs[:, 1]], w, model=model, scale=space.scale,
                            mirror=mirror, planar=space.planar, scale_bounds=space.scale_bounds)
        if np.array_equal(new_pairs, pairs):
            break
        pairs = new_pairs
    mapped = o @ aff[:3, :3].T + aff[:3, 3]
    pairs, dist = mutual_nn(mapped, m, space.tol, dims)
    w = wo[pairs[:, 0]] * wm[pairs[:, 1]] if len(pairs) else np.zeros(0)
    rms = float(np.sqrt((w * dist**2).sum() / w.sum())) if len(pairs) else np.inf
    return aff, pairs, dist, float(w.sum()), rms


def _reference_points(o: np.ndarray) -> np.ndarray:
    lo, hi = o.min(0), o.max(0)
    return np.array([lo, hi, [lo[0], hi[1], lo[2]], [hi[0], lo[1], hi[2]]])


def best_match(rot, trans, scores, o, m, wo, wm, space: SearchSpace, mirror: bool, *,
               n_refine: int = 12, label: str = "", start=None) -> Match | None:
    """Refine the ``n_refine`` best-scoring distinct hypotheses; return the result with most
    pairs, then the most significant (:func:`.significance.match_significance`: how tightly
    they agree). Not the weighted score: a few confident particles fitted by chance must not
    outrank more pairs that include weak detections.

    ``start(aff) -> aff`` may adjust a hypothesis before refinement (e.g. place z)."""
    ref = _reference_points(o)
    tried: list[np.ndarray] = []
    best = None
    tmax = float(space.tol[:2].max() if space.planar else space.tol.max())
    for h in np.argsort(-scores, kind="stable"):
        if len(tried) >= n_refine:
            break
        aff = np.eye(4)
        aff[:3, :3], aff[:3, 3] = rot[h], trans[h]
        if start is not None:
            aff = start(aff)
        mapped = ref @ aff[:3, :3].T + aff[:3, 3]
        if any(np.abs(mapped - t).max() < tmax for t in tried):
            continue
        tried.append(mapped)
        aff, pairs, dist, score, rms = refine_match(aff, o, m, wo, wm, space, mirror)
        if len(pairs) < 2:
            continue
        sig = match_significance(aff, pairs, o, m, space.tol, 2 if space.planar else 3)
        if best is None or (len(pairs), sig) > (len(best.pairs), best.significance):
            best = Match(aff, pairs, dist, score, rms, mirror, len(rot), label, significance=sig)
    return best
