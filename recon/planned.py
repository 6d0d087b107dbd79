"""Reconstruction of planned (optics-guided) acquisitions, with a test of the support.

A planned acquisition samples only ``m`` k-space points chosen for the support ``S``
that the registered optics predicts (:mod:`dualmode.recon.optics_prior`,
:mod:`dualmode.plan`). Three steps:

1. **Lock-in in k-space.** Shot ``k`` gives ``y_k = s_k c_k g * y_H + y_B + drift + n_k``
   at every sample (``g`` the RF-depletion weight of each excitation, the same in every
   shot). The per-shot weights ``c_k`` are estimated on linear (adjoint) shot images by
   :func:`dualmode.recon.signflip.signflip_combine` and applied to the k-space:
   ``y_H = sum_k w_k y_k``. The residual of every sample's shot series after projecting out
   the shot model (columns ``s_k c_k``, ``1``, drift ``tau_k^p``) has ``n_shots - rank``
   degrees of freedom per sample and no spatial model at all: it measures the noise level
   ``sigma`` of ``y_H`` independently of the support.
2. **Support-constrained least squares** ``x_S = argmin ||y_fit - G A_S x||`` on the fit
   samples (``G = diag(g)``).
3. **Data consistency.** Under a correct support the fit residual obeys
   ``RSS / sigma^2 ~ chi^2(2 (m - s))``, and the prediction error on the *check* samples
   (acquired but left out of the fit) ``r^H C^{-1} r / sigma^2 ~ chi^2(2 c)`` with
   ``C = I + B (A^H G^2 A)^{-1} B^H``. Both are compared with ``sigma`` by F tests (its
   estimate has finite degrees of freedom). Signal the support does not explain (a particle
   the optics missed, a registration error larger than the dilation) raises both. When the
   excess is significant *and* not negligible (``unexplained_fraction`` of the model energy),
   the result is flagged and a regularised reconstruction on the whole grid (free on the
   dilated support, L1 outside it) replaces the support-constrained one.

References: Liang & Lauterbur, IEEE TMI 10, 132 (1991) (support-constrained imaging);
Fedorov (1972) (design); the F test of nested models (e.g. Seber & Lee, *Linear
Regression Analysis*, 2003, ch. 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from .coils import svd_combine
from .blas import single_thread_blas
from .optics_prior import fourier_matrix, support_mask
from .signflip import SignFlipResult, signflip_combine


@dataclass
class KSpaceLockIn:
    """Lock-in of point-sampled shots: ``y_signal = sum_k w_k y_k`` and its noise level."""

    y_signal: np.ndarray
    y_background: np.ndarray
    sigma: float
    sigma_dof: int
    lockin: SignFlipResult
    shots: np.ndarray


@dataclass
class PlannedResult:
    """Image, test statistics and verdict of :func:`reconstruct_planned`."""

    image: np.ndarray
    support: np.ndarray
    noise_sigma_image: float
    flagged: bool
    reasons: list = field(default_factory=list)
    fallback: bool = False
    stats: dict = field(default_factory=dict)


def planned_flip_angle(n_excitations: int, depletion: float = 0.25) -> float:
    """Constant flip angle (degrees) spending ``depletion`` of the polarization over ``n_excitations``:
    ``cos(alpha)^n = 1 - depletion``."""
    return float(np.rad2deg(np.arccos((1.0 - depletion) ** (1.0 / n_excitations))))


def planned_sample_weights(n_samples: int, flip_deg: float, n_full: int, *, tr_ms: float = 0.0,
                           t1_s: float = np.inf) -> np.ndarray:
    """Signal weight of each single-point excitation, relative to a full acquisition.

    Sample ``j`` of a planned shot carries ``sin(alpha) cos(alpha)^j`` of the polarization.
    The reference is a fully phase-encoded acquisition of ``n_full`` excitations spending
    the same fraction ``1 - cos(alpha)^m`` of the polarization: its mean weight is 1. Fewer
    excitations allow a larger flip angle, so a planned sample carries about ``sqrt(n_full / m)``
    times the signal of a full-acquisition sample: the polarization saved is signal kept.
    """
    from .hyperpolarized import excitation_weights

    w = excitation_weights(n_samples, flip_deg, tr_ms, t1_s)
    left = np.cos(np.deg2rad(flip_deg)) ** n_samples
    ref_flip = np.rad2deg(np.arccos(left ** (1.0 / n_full)))
    return w / excitation_weights(n_full, ref_flip).mean()  # reference without relaxation


def _shot_images(data: np.ndarray, coords: np.ndarray, shape) -> np.ndarray:
    """Adjoint images of the point samples, ``(rep, *shape)``, scaled so a point of amplitude a peaks at a."""
    from .nufft import nufft_adjoint

    nd = coords.shape[1]
    img = nufft_adjoint(data, coords, tuple(shape[:nd]))
    return img.reshape(data.shape[0], *shape) / data.shape[-1]


def lockin_kspace(data: np.ndarray, polarization, coords: np.ndarray, shape) -> KSpaceLockIn:
    """Sign-flip lock-in of point-sampled shots, applied in k-space, with its noise level.

    Parameters
    ----------
    data : complex array ``(rep, coil, m)``
        Raw samples of every shot (RF-depletion weighting *not* divided out).
    polarization : sequence of +1/-1
    coords : ``(m, d)`` array
        Sample positions in cycles per FOV.
    shape : sequence of int
        Image grid.

    Returns
    -------
    KSpaceLockIn
        ``sigma`` is the per-component noise sigma of one sample of ``y_signal``, from the
        shot-series residuals (``sigma_dof`` real degrees of freedom; 0 when the scheme
        leaves none, then ``sigma`` is NaN).
    """
    y = svd_combine(np.asarray(data), coil_axis=1)  # (rep, m)
    s = np.asarray(polarization, dtype=float)
    shots = _shot_images(y, np.asarray(coords, float), shape)
    first = signflip_combine(shots, s)
    y_h = np.tensordot(first.signal_weights, y, axes=(0, 0))
    y_b = np.tensordot(first.background_weights, y, axes=(0, 0))
    tau = np.asarray(first.info.get("tau", np.linspace(-1, 1, len(s))), float)
    cols = [s * first.shot_weights, np.ones(len(s))] + [tau ** (p + 1) for p in range(first.drift_order)]
    model = np.stack(cols, axis=1).astype(complex)
    rank = np.linalg.matrix_rank(model)
    resid = y - model @ np.linalg.lstsq(model, y, rcond=None)[0]
    dof = 2 * y.shape[1] * (len(s) - rank)
    sigma = float(np.sqrt(np.sum(np.abs(resid) ** 2) / dof)) if dof > 0 else float("nan")
    sigma_h = sigma * float(np.linalg.norm(first.signal_weights))
    return KSpaceLockIn(y_h, y_b, sigma_h, int(dof), first, shots)


def _weighted_lstsq(a: np.ndarray, y: np.ndarray):
    """Least squares with the pseudo-inverse normal matrix (for prediction variances)."""
    u, sv, vh = np.linalg.svd(a, full_matrices=False)
    if sv[-1] <= sv[0] * 1e-10:
        raise ValueError("the support is not identifiable from these samples (rank-deficient A_S)")
    x = vh.conj().T @ ((u.conj().T @ y) / sv)
    cov = (vh.conj().T / sv**2) @ vh  # (A^H A)^-1
    return x, cov, float(sv[0] / sv[-1])


def _f_sf(stat: float, dof: int, sigma_dof: int) -> float:
    """P-value of ``stat / sigma^2 ~ chi^2(dof)`` when ``sigma^2`` has ``sigma_dof`` degrees of freedom."""
    if dof <= 0:
        return 1.0
    if sigma_dof <= 0:
        return float("nan")
    return float(scipy.stats.f.sf(stat / dof, dof, sigma_dof))


@single_thread_blas
def consistency(y, coords, support, sigma: float, *, sample_weights=None, fit=None, sigma_dof: int = 10**6,
                columns=None, extra_dof: int = 0):
    """Support-constrained fit on the ``fit`` samples and both tests of the support.

    Returns ``(x_S, stats)``: ``x_S`` the amplitudes of the support voxels
    (``np.argwhere(support)`` order), or of ``columns`` (a model matrix ``(m, P)``, e.g.
    :func:`dualmode.recon.particle_fit.particle_columns`, whose ``extra_dof`` nonlinear
    parameters were fitted; ``support`` then only bounds the scan), and ``stats`` with
    ``chi2_fit``, ``dof_fit``, ``p_fit``, ``chi2_check``, ``dof_check``, ``p_check``,
    ``unexplained_fraction`` (excess residual energy over the model energy), the scan for a
    point source outside the support and ``condition_number``.
    """
    y = np.asarray(y).ravel()
    g = np.ones(len(y)) if sample_weights is None else np.asarray(sample_weights, float).ravel()
    fit = np.ones(len(y), bool) if fit is None else np.asarray(fit, bool)
    a = (fourier_matrix(coords, support) if columns is None else np.asarray(columns)) * g[:, None]
    x, cov, cond = _weighted_lstsq(a[fit], y[fit])
    model = a @ x
    r_fit = y[fit] - model[fit]
    s = a.shape[1]
    dof_fit = 2 * (int(fit.sum()) - s) - int(extra_dof)
    chi2_fit = float(np.sum(np.abs(r_fit) ** 2) / sigma**2)
    check = ~fit
    chi2_check, dof_check = 0.0, 0
    if check.any():
        b = a[check]
        c = np.eye(len(b)) + b @ cov @ b.conj().T
        r = y[check] - model[check]
        chi2_check = float(np.real(r.conj() @ np.linalg.solve(c, r)) / sigma**2)
        dof_check = 2 * int(check.sum())
    excess = (chi2_fit - dof_fit + chi2_check - dof_check) * sigma**2
    scan = _scan_outside(r_fit, fourier_matrix, coords, fit, g, support, a[fit], sigma, sigma_dof)
    scan["scan_fraction"] = float(scan.pop("energy") / max(np.sum(np.abs(model) ** 2), 1e-300))
    return x, {**scan,
        "chi2_fit": chi2_fit, "dof_fit": dof_fit, "p_fit": _f_sf(chi2_fit, dof_fit, sigma_dof),
        "chi2_check": chi2_check, "dof_check": dof_check, "p_check": _f_sf(chi2_check, dof_check, sigma_dof),
        "unexplained_fraction": float(max(excess, 0.0) / max(np.sum(np.abs(model) ** 2), 1e-300)),
        "condition_number": cond, "support_voxels": int(s), "noise_var_voxel": float(np.real(np.diag(cov)).mean()),
    }


def _scan_outside(r_fit, fourier_matrix, coords, fit, g, support, a_fit, sigma, sigma_dof, max_elements=4e7):
    """Scan statistic for one point source outside the support (GLRT of a missed particle).

    For every voxel ``v`` outside ``S``, ``p_v = (I - P_S) g a_v`` is the part of its column
    the support cannot produce and ``T_v = |p_v^H r|^2 / (sigma^2 ||p_v||^2) ~ chi^2(2)``
    under a correct support; the p-value of ``max_v T_v`` is Bonferroni-corrected over the
    voxels. Grids too large for the dense matrix use ``||p_v||^2 <= ||g a_v||^2`` (conservative).
    """
    outside = np.argwhere(~support)
    n_out = len(outside)
    if n_out == 0:
        return {"scan_max": 0.0, "p_scan": 1.0, "scan_voxel": None, "energy": 0.0}
    q, _ = np.linalg.qr(a_fit)
    best, best_v, best_norm = -1.0, None, 1.0
    chunk = max(int(max_elements // max(len(r_fit), 1)), 1)
    gf = g[fit]
    for start in range(0, n_out, chunk):
        vox = outside[start:start + chunk]
        mask = np.zeros(support.shape, bool)
        mask[tuple(vox.T)] = True
        cols = fourier_matrix(coords[fit], mask) * gf[:, None]  # columns in argwhere(mask) order == vox order
        proj = q.conj().T @ cols
        norm2 = np.maximum(np.sum(np.abs(cols) ** 2, axis=0) - np.sum(np.abs(proj) ** 2, axis=0), 1e-12)
        t = np.abs(cols.conj().T @ r_fit) ** 2 / (sigma**2 * norm2)
        i = int(np.argmax(t))
        if t[i] > best:
            best, best_v, best_norm = float(t[i]), np.argwhere(mask)[i], float(norm2[i])
    p_one = scipy.stats.f.sf(best / 2, 2, sigma_dof) if sigma_dof > 0 else float("nan")
    return {"scan_max": best, "p_scan": float(min(1.0, n_out * p_one)), "scan_voxel": best_v.tolist(),
            "energy": max(best - 2.0, 0.0) * sigma**2}


def regularised_fallback(y, coords, support: np.ndarray, sigma: float, *, sample_weights=None, fit=None,
                         sigma_dof: int = 10**6, dilation: float = 1.0, alpha: float = 1e-3,
                         max_sources: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
    """Reconstruction on a dilated and repaired support, Tikhonov-regularised.

    The support is repaired: while the scan of :func:`consistency` finds a significant
    point source outside it (``p < alpha``), a one-voxel disc around that source joins the
    support (at most ``max_sources`` times); then it is dilated by ``dilation`` voxels.
    The amplitudes are the MAP estimate with a Gaussian prior of the support voxels,
    ``argmin ||y - G A x||^2 + (2 sigma^2 / tau^2) ||x||^2`` with ``tau^2`` the mean ``|x|^2``
    of the unregularised fit, which stays defined when the dilated support outgrows the samples.

    Returns ``(image, support, added voxels)``.
    """
    y = np.asarray(y).ravel()
    g = np.ones(len(y)) if sample_weights is None else np.asarray(sample_weights, float).ravel()
    fit = np.ones(len(y), bool) if fit is None else np.asarray(fit, bool)
    free = support.copy()
    added = []
    for _ in range(max_sources):  # repair on the plan's support, then dilate
        if free.sum() >= fit.sum() - 2:
            break
        _, stats = consistency(y, coords, free, sigma, sample_weights=g, fit=fit, sigma_dof=sigma_dof)
        if not stats["p_scan"] < alpha or stats["scan_voxel"] is None:
            break
        added.append(stats["scan_voxel"])
        free = support_mask(support.shape, [stats["scan_voxel"]], mask=free, dilation=1.0)
    free = support_mask(support.shape, mask=free, dilation=dilation)
    a = fourier_matrix(coords, free) * g[:, None]
    x0 = np.linalg.lstsq(a[fit], y[fit], rcond=None)[0]
    damping = 2 * sigma**2 / max(float(np.mean(np.abs(x0) ** 2)), 1e-300)
    af = a[fit]
    x = np.linalg.solve(af.conj().T @ af + damping * np.eye(af.shape[1]), af.conj().T @ y[fit])
    image = np.zeros(support.shape, complex)
    image[free] = x
    return image, free, added


def _verdict(stats: dict, alpha: float, min_fraction: float) -> list[str]:
    reasons = []
    if not np.isfinite(stats["p_fit"]):
        reasons.append("noise level unknown (the polarization scheme leaves no residual degrees of freedom): "
                       "the support cannot be tested")
        return reasons
    p = min(stats["p_fit"], stats["p_check"] if stats["dof_check"] else 1.0)
    if stats["p_scan"] < alpha / 3 and stats["scan_fraction"] > min_fraction:
        reasons.append(
            f"signal outside the optical support: the strongest unexplained point source at voxel "
            f"{stats['scan_voxel']} (scan statistic {stats['scan_max']:.0f}, p={stats['p_scan']:.1e}) carries "
            f"{100 * stats['scan_fraction']:.1f}% of the signal energy (a particle the optics missed?)")
    if p < alpha / 3 and stats["unexplained_fraction"] > min_fraction:
        reasons.append(
            f"data inconsistent with the optical support: fit chi2 {stats['chi2_fit']:.0f} for {stats['dof_fit']} "
            f"dof (p={stats['p_fit']:.1e}), check chi2 {stats['chi2_check']:.0f} for {stats['dof_check']} dof "
            f"(p={stats['p_check']:.1e}); {100 * stats['unexplained_fraction']:.1f}% of the signal energy is not "
            "explained (a particle the optics missed, or a registration error larger than the support dilation)")
    return reasons


def _particle_model(y, coords, support, sigma, particles: dict, sample_weights, fit, sigma_dof):
    """Parametric fit (:mod:`.particle_fit`), its tests, and the band-limited image of the fitted particles."""
    from .particle_fit import fit_particles, particle_columns, render_particles

    shape, vox = support.shape, particles["voxel_mm"]
    amp, pos, diam = fit_particles(y, coords, shape, vox, particles["pos_vox"], particles["diam_mm"],
                                   sample_weights=sample_weights, fit=fit)
    cols = particle_columns(np.atleast_2d(coords), shape, vox, pos, diam)
    nd = np.atleast_2d(coords).shape[1]
    x, stats = consistency(y, coords, support, sigma, sample_weights=sample_weights, fit=fit, sigma_dof=sigma_dof,
                           columns=cols, extra_dof=len(diam) * (nd + 1))
    stats["particles"] = {"amplitude": np.abs(x).tolist(), "phase_deg": np.degrees(np.angle(x)).tolist(),
                          "position_voxel": pos.tolist(), "diameter_mm": diam.tolist()}
    return render_particles(x, shape, vox, pos, diam), stats


def reconstruct_planned(y, coords, support: np.ndarray, sigma: float, *, sample_weights=None, fit=None,
                        particles: dict | None = None, sigma_dof: int = 10**6, alpha: float = 1e-3, min_fraction: float = 0.002,
                        fallback_dilation: float = 1.0) -> PlannedResult:
    """Support-constrained reconstruction of planned samples, tested, with a flagged fallback.

    Parameters
    ----------
    y : (m,) complex array
        Lock-in k-space samples (RF weighting not divided out).
    coords : (m, d) array
        Sample positions (cycles/FOV).
    support : bool array
        Support the plan assumed, on the image grid.
    sigma : float
        Per-component noise sigma of one sample of ``y`` (see :func:`lockin_kspace`).
    sample_weights : (m,) array, optional
        Known signal weight ``g`` of every sample (RF depletion, flip-angle gain).
    fit : (m,) bool array, optional
        Samples used in the fit; the others are check samples (default: all fit).
    particles : dict, optional
        ``pos_vox``, ``diam_mm``, ``voxel_mm``: fit the parametric particle model
        (:mod:`dualmode.recon.particle_fit`) instead of free voxel amplitudes; ``support``
        then marks the particles' region (no point source is sought inside it).
    alpha : float
        False-alarm probability of the two tests together (Bonferroni).
    min_fraction : float
        Unexplained energy (fraction of the model energy) below which a significant
        excess is attributed to model error (band-limited particle edges) and not flagged.
    fallback_dilation : float
        Extra dilation (voxels) of the free region of the fallback.

    Returns
    -------
    PlannedResult

    Examples
    --------
    >>> import numpy as np
    >>> from dualmode.recon.optics_prior import choose_kspace_samples, fourier_matrix, support_mask
    >>> sup = support_mask((16, 16, 1), [[5, 5], [10, 3]], dilation=1.0)
    >>> k = choose_kspace_samples(sup, 20)
    >>> x = np.zeros(sup.sum(), complex); x[2] = 1.0
    >>> res = reconstruct_planned(fourier_matrix(k, sup) @ x, k, sup, 1e-3)
    >>> bool(res.flagged), round(float(np.abs(res.image).max()), 3)
    (False, 1.0)
    """
    support = np.asarray(support, bool)
    if particles is None:
        x, stats = consistency(y, coords, support, sigma, sample_weights=sample_weights, fit=fit, sigma_dof=sigma_dof)
        image = np.zeros(support.shape, complex)
        image[support] = x
    else:
        image, stats = _particle_model(y, coords, support, sigma, particles, sample_weights, fit, sigma_dof)
    reasons = _verdict(stats, alpha, min_fraction)
    result = PlannedResult(image, support, float(sigma * np.sqrt(stats["noise_var_voxel"])), bool(reasons),
                           reasons, False, stats)
    if reasons and np.isfinite(sigma):
        result.image, result.support, added = regularised_fallback(
            y, coords, support, sigma, sample_weights=sample_weights, fit=fit, sigma_dof=sigma_dof,
            dilation=fallback_dilation, alpha=alpha)
        result.fallback = True
        result.stats["fallback_added_sources"] = added
        result.stats["fallback_support_voxels"] = int(result.support.sum())
    return result
