"""How unlikely a particle match is by chance: a residual-aware binomial tail.

Chance model (a contrario, as in Moisan & Stival 2004 and the NFA of AC-RANSAC): under a
hypothesis that is *not* the true transform, the MRI particles near the mapped optical field
are a Poisson process of the density observed there, independent of the optical particles.
An optical particle then has an MRI particle within a (normalised) distance ``r`` with
probability

.. math:: p(r) = 1 - \\exp(-\\lambda\\, r^{d}),

where ``lambda`` is the expected number of MRI particles inside one tolerance ellipsoid
(``d = 3``) or ellipse (``d = 2``, in-plane matching), estimated from the MRI particles that
fall in the optical particles' bounding box (dilated by one tolerance, the matched ones
included: conservative). With the pair residuals ``r_(1) <= ... <= r_(K)`` (each divided by
the per-axis tolerance), the probability that at least ``j`` of the ``n`` optical particles
have a partner as close as ``r_(j)`` is the binomial tail

.. math:: P_j = \\Pr[\\mathrm{Bin}(n, p(r_{(j)})) \\ge j] = I_{p(r_{(j)})}(j, n - j + 1)

(``I`` the regularised incomplete beta function), and the *significance* of the match is
``S = max_j (-log10 P_j) - log10 n`` (the ``n`` choices of ``j``: a Bonferroni bound, so that
for a fixed hypothesis ``Pr[S >= s] <= 10^-s``; checked by simulation in the tests). It grows
with the number of pairs and with how tightly they agree: five pairs within 0.3 tolerances in
a sparse field are far less likely than five at 0.9. The residuals are *held out*
(:func:`held_out_residuals`): a hypothesis built from a particle tetrahedron gets no credit
for fitting its own pairs.

The search takes the best of many hypotheses, so ``S`` of the best match is not a p-value by
itself; :func:`dualmode.registration.register` compares it with ``S`` of the best match the
same search finds against decoys (null sets without a true correspondence). For the best of
``N`` roughly independent chance hypotheses ``Pr[S_max > log10 N + delta] ~ 10^-delta``,
so a margin of ``delta`` decades over the decoy bounds the false-acceptance rate by about
``10^-delta`` for a well-calibrated ``S``; ``S`` is conservative and discrete (each pair adds
a few decades), so the margin used is measured (``DECOY_MARGIN``, docs/registration.md).

References: L. Moisan, B. Stival, "A probabilistic criterion to detect rigid point matches
between two images and estimate the fundamental matrix", IJCV 57(3):201-218 (2004);
L. Moisan, P. Moulon, P. Monasse, "Automatic homographic registration of a pair of images,
with a contrario elimination of outliers", IPOL 2:56-73 (2012).
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc, gammaln

#: residuals below this fraction of the tolerance count as this (localisation noise floor)
R_FLOOR = 0.1


def field_density(aff: np.ndarray, o: np.ndarray, m: np.ndarray, tol: np.ndarray, dims: int) -> float:
    """Expected number of MRI particles per tolerance ellipsoid (ellipse) near the optical field.

    ``aff`` maps optical um to the frame of ``m`` (mm); the MRI particles are mapped back into
    the optical frame and counted inside the optical particles' bounding box dilated by the
    largest tolerance; ``(count + 1) / box`` times the tolerance volume.
    """
    a = aff[:dims, :dims]
    inv = np.linalg.inv(a)
    m_o = (m[:, :dims] - aff[:dims, 3]) @ inv.T
    margin = float(tol[:dims].max()) * np.sqrt((inv**2).sum(1))  # one tolerance, in optical um per axis
    lo, hi = o[:, :dims].min(0) - margin, o[:, :dims].max(0) + margin
    count = int(np.all((m_o >= lo) & (m_o <= hi), axis=1).sum())
    box_mm = float(np.prod(hi - lo)) * abs(float(np.linalg.det(a)))
    unit = (4.0 / 3.0 * np.pi if dims == 3 else np.pi) * float(np.prod(tol[:dims]))
    return (count + 1) / box_mm * unit


def _log10_binom_tail(j: np.ndarray, n: int, p: np.ndarray) -> np.ndarray:
    """``log10 Pr[Bin(n, p) >= j]`` (j >= 1), with a log-space bound where it underflows."""
    tail = betainc(j, n - j + 1, p)
    with np.errstate(divide="ignore"):
        exact = np.log10(tail)
    # Pr[Bin >= j] <= C(n, j) p^j: used only where the exact value underflows
    bound = (gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1) + j * np.log(np.maximum(p, 1e-300))) / np.log(10)
    return np.where(tail > 1e-280, exact, bound)


def significance(residuals_norm: np.ndarray, n_optical: int, density: float, dims: int) -> float:
    """``S = max_j -log10 Pr[Bin(n, p(r_(j))) >= j] - log10 n`` of a match (module docstring).

    Parameters
    ----------
    residuals_norm : (K,) ndarray
        Pair residuals divided by the tolerance (within tolerance: < 1).
    n_optical : int
        Optical particles the hypothesis was tested on.
    density : float
        Expected MRI particles per tolerance ellipsoid near the field (:func:`field_density`).
    dims : {2, 3}

    Returns
    -------
    float
        Decades of improbability (0 for no pairs).

    Examples
    --------
    >>> tight = significance(np.full(6, 0.3), 10, 0.05, 3)  # six pairs at 0.3 tolerances
    >>> loose = significance(np.full(6, 0.9), 10, 0.05, 3)
    >>> bool(tight > loose + 5)
    True
    """
    r = np.sort(np.maximum(np.asarray(residuals_norm, float), R_FLOOR))
    n = max(int(n_optical), len(r))
    if len(r) == 0:
        return 0.0
    j = np.arange(1, len(r) + 1)
    p = -np.expm1(-float(density) * r**dims)
    return float(max(0.0, -_log10_binom_tail(j, n, p).min() - np.log10(n)))


def held_out_residuals(aff: np.ndarray, o: np.ndarray, m: np.ndarray, dims: int) -> np.ndarray:
    """Residual vector of each pair under the fit to all *other* pairs (leave-one-out), (K, dims) mm.

    A fitted transform absorbs part of the residuals of the pairs it was fitted to (a chance
    tetrahedron fits its own four pairs well by construction); the held-out residual is what
    the transform *predicts* for a pair it has not seen. Rigid fit with the scale and the
    handedness of ``aff`` (Kabsch/Umeyama, batched over the ``K`` subsets); ``inf`` when too
    few pairs remain. ``dims = 2``: in-plane (x, y) only.
    """
    k = len(o)
    need = 2 if dims == 2 else 3
    if k <= need:
        return np.full((k, dims), np.inf)
    a = aff[:dims, :dims]
    scale = abs(float(np.linalg.det(a))) ** (1.0 / dims)
    sign = float(np.sign(np.linalg.det(a))) or 1.0
    src, dst = o[:, :dims], m[:, :dims]
    keep = 1.0 - np.eye(k)  # row n: every pair but n
    s0, d0 = keep @ src / (k - 1), keep @ dst / (k - 1)  # (k, dims) centroids without pair n
    xs, yd = src[None] - s0[:, None], dst[None] - d0[:, None]  # (k, k, dims)
    cov = np.einsum("nk,nki,nkj->nij", keep, yd, xs)
    u, _, vt = np.linalg.svd(cov)
    fix = np.ones((k, dims))
    fix[:, -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) * sign < 0, -1.0, 1.0)
    rot = np.einsum("nij,nj,njk->nik", u, fix, vt)  # Kabsch with the handedness of aff
    pred = scale * np.einsum("nij,nj->ni", rot, src - s0) + d0
    return pred - dst


def match_significance(aff: np.ndarray, pairs: np.ndarray, o: np.ndarray, m: np.ndarray, tol: np.ndarray,
                       dims: int) -> float:
    """:func:`significance` of the pairs of ``aff`` (optical um -> frame mm) between ``o`` and ``m``,
    from their held-out residuals (:func:`held_out_residuals`) divided by the tolerance."""
    if len(pairs) == 0:
        return 0.0
    o_p, m_p = o[pairs[:, 0]], m[pairs[:, 1]]
    if dims == 2:
        o_p = np.c_[o_p[:, :2], np.zeros(len(o_p))]
    r = np.linalg.norm(held_out_residuals(aff, o_p, m_p, dims) / tol[:dims], axis=1)
    r = r[np.isfinite(r)]
    return significance(r, len(o), field_density(aff, o, m, tol, dims), dims)
