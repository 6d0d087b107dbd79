"""Sign-flip lock-in: separate the hyperpolarized signal from every sign-invariant background.

Model for shot ``k`` with polarization sign ``s_k`` (the microwave sweep direction,
Lv et al., PNAS 118, e2023579118 (2021)) at normalized time ``tau_k`` in [-1, 1]:

    S_k(x) = s_k c_k H(x) + B(x) + sum_{p=1..P} tau_k^p D_p(x) + n_k(x),

``c_k = a_k exp(i phi_k)`` the unknown complex polarization of the shot (amplitude
asymmetry between + and -, decay from shot to shot, phase drift), ``B`` thermal 13C
and every other sign-invariant signal (at mid-acquisition), ``D_p`` optional
polynomial drift maps, ``n`` complex Gaussian noise. Everything stays complex;
magnitude (or the phase-sensitive real part, :meth:`SignFlipResult.phase_sensitive`)
is taken only at the end.

Estimation (``T = [tau^0 .. tau^P]``, ``P_T`` the projector orthogonal to it):

1. ``P_T S = (P_T g) H^T + P_T n`` with ``g_k = s_k c_k``: a rank-one matrix.
   Its dominant left singular vector ``u`` is found from the Gram matrix of the
   *high-signal voxels* (projected energy above a chi-square noise threshold),
   starting from the scheme prior ``u = P_T s`` and re-weighted a few times with
   Huber weights on the rank-one residual so that voxels violating the model
   (motion edges, flow) do not bias ``c_k``.
2. ``g = alpha u + T beta``: ``P_T g`` is known up to ``alpha``; the part of ``g``
   in ``span(T)`` is not observable. ``(alpha, beta)`` are chosen so that
   ``c_k = s_k g_k`` is closest to 1 in least squares (unit mean polarization),
   which fixes the scale and phase of ``H``.
3. ``[H, B, D_1..D_P]`` is the best linear unbiased estimate with design
   ``X = [g, T]`` (weighted by ``1 / sigma_k`` if per-shot noise is given or
   estimated). By Frisch-Waugh, ``H = (P_T g)^H S / ||P_T g||^2``: its shot weights
   are orthogonal to ``1, tau, .. tau^P`` *by construction*, so ``B`` and the drift
   cancel exactly in ``H`` whatever the error of the estimated ``c_k``.
4. Noise: the per-voxel residual of the full model has ``n - P - 2`` complex
   degrees of freedom; its median energy over voxels (chi-square scaled) gives the
   per-shot sigma, ``sigma_H = sigma sqrt((X^H X)^-1_00)`` (``sigma / sqrt(n)`` for
   ideal balanced shots) and a smoothed per-voxel noise map. With no residual
   freedom (``n = P + 2``) the MAD of ``H`` (sparse particles) is used.

With two shots and ``P = 0`` this is exactly ``H = (S+ - S-)/2``, ``B = (S+ + S-)/2``.

Drift order. ``P`` is given or chosen automatically: the order the scheme cancels
(free, :mod:`dualmode.recon.schemes`), raised while a refitted model of order
``P + 1`` removes significantly more residual energy than one dimension of noise.

Ambiguity. A + vs - amplitude (or phase) asymmetry, ``c_k = 1 + e s_k``, gives
``g = s + e``: the ``e`` part lies in ``span(T)`` and cannot be told apart from a
sign-invariant component proportional to ``H``. It leaks into ``B`` (as ``e H``),
never into ``H``; :func:`dualmode.recon.metrics.signflip_metrics` reports that
``H``-shaped component of ``B``. Likewise a drift that is proportional to ``H``.

Image space or k-space. The combination is linear and applied per shot with the
same weights everywhere, so it commutes with any linear reconstruction: combining
reconstructed images (here) equals reconstructing the combined k-space. Image
space is cheaper when each shot is one FFT and the per-voxel statistics are needed
(voxel selection, noise map). With an expensive operator (NUFFT, iterative
SENSE/CS) estimate ``c_k`` once from cheap per-shot gridded images, apply
``signal_weights`` / ``background_weights`` to the k-space of the shots, and
reconstruct only ``H`` and ``B`` (2 reconstructions instead of ``n``). Non-linear
reconstructions (compressed sensing) must combine in k-space first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage

from .schemes import cancelled_drift_order, drift_basis, drift_efficiency, normalized_times, scheme_string
from .signflip_fit import _chi2_scale, _fit, per_shot_sigma


@dataclass
class SignFlipResult:
    """Output of :func:`signflip_combine` (complex images on the reconstruction grid).

    ``signal`` H, ``background`` B (at mid-acquisition), ``shot_weights`` c_k,
    ``noise_sigma`` the per-component sigma of H. ``H = sum_k signal_weights[k] S_k``
    and ``B = sum_k background_weights[k] S_k`` (apply them to k-space to
    reconstruct once). ``drift[p-1]`` is ``D_p``; ``noise_map`` the per-voxel sigma
    of H; ``signal_mask`` the voxels used to estimate ``c_k``; ``shifts`` the
    per-shot displacement (voxels) corrected before combining, if any. ``info``:
    ``per_shot_sigma`` (noise of each shot, from the residuals), ``residual_dof``,
    ``sign_alignment`` (``|cos|`` between the fitted ``P_T g`` and the scheme ``P_T s``),
    ``tau`` (normalized shot times), ``drift_tests`` (automatic order selection).
    """

    signal: np.ndarray
    background: np.ndarray
    shot_weights: np.ndarray
    noise_sigma: float
    background_sigma: float = float("nan")
    shot_sigma: float = float("nan")
    signal_weights: np.ndarray | None = None
    background_weights: np.ndarray | None = None
    drift: np.ndarray | None = None
    drift_order: int = 0
    noise_map: np.ndarray | None = None
    signal_mask: np.ndarray | None = None
    polarization: np.ndarray | None = None
    efficiency: float = 1.0
    shifts: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def snr(self) -> float:
        """Peak ``|H|`` over the noise sigma of one real/imaginary component of ``H``."""
        return float(np.abs(self.signal).max() / self.noise_sigma)

    def phase_sensitive(self, smooth_sigma: float | None = None) -> np.ndarray:
        """Real part of ``H`` after removing its phase: no Rician bias, noise ``noise_sigma``.

        Parameters
        ----------
        smooth_sigma : float, optional
            ``None``: one global phase (``angle(sum H |H|)``). Otherwise a smooth
            phase map, the angle of ``H`` Gaussian-filtered with this sigma (voxels),
            for receive-phase variations across the field of view.
        """
        h = self.signal
        if smooth_sigma is None:
            phase = np.angle(np.sum(h * np.abs(h)))
        else:
            sig = [smooth_sigma if n > 1 else 0 for n in h.shape]
            phase = np.angle(scipy.ndimage.gaussian_filter(h.real, sig)
                             + 1j * scipy.ndimage.gaussian_filter(h.imag, sig))
        return (h * np.exp(-1j * phase)).real.astype(np.float32)

    def model_shots(self) -> np.ndarray:
        """Noise-free prediction of every shot, ``s_k c_k H + B + sum_p tau_k^p D_p``."""
        tau = np.asarray(self.info["tau"], dtype=float)
        pred = np.multiply.outer(self.shot_weights * self.polarization, self.signal) + self.background
        for p in range(self.drift_order):
            pred += np.multiply.outer(tau ** (p + 1), self.drift[p])
        return pred


def robust_noise_sigma(image: np.ndarray) -> float:
    """Noise sigma of one component of a complex image by the median absolute deviation.

    Valid when the signal is sparse (particles): ``1.4826 * MAD`` of the real and
    imaginary parts pooled.
    """
    x = np.concatenate([np.ravel(image.real), np.ravel(image.imag)])
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def signflip_combine(
    images: np.ndarray,
    polarization,
    *,
    drift_order: int | str = "auto",
    shot_times=None,
    shot_noise=None,
    mask: np.ndarray | None = None,
    robust: bool = True,
    n_iter: int = 4,
    huber_k: float = 2.0,
    detect_alpha: float = 1e-3,
    noise_window: int = 5,
    register: bool = False,
    register_kwargs: dict | None = None,
    max_auto_order: int = 2,
    auto_z: float = 5.0,
    min_efficiency: float = 0.75,
) -> SignFlipResult:
    """Estimate ``H``, ``B``, drift and the per-shot polarization from sign-flipped shots.

    Shot ``k`` with sign ``s_k`` is modelled as ``S_k = c_k H + B + drift_k + noise``, with
    ``c_k`` the unknown complex polarization of the shot (``s_k`` times an amplitude and phase
    that vary: asymmetry, decay); the mean-removed shots form the rank-one matrix
    ``(c_k - mean c) H`` whose dominant singular vector gives the weights of ``H``, so every
    sign-invariant background cancels. The method of Lv et al. [1]_.

    Parameters
    ----------
    images : complex ndarray, shape (n_shots, ...)
        One reconstructed image per shot, coils already combined (phase kept).
    polarization : sequence of +1/-1, length n_shots
        Sign of each shot (see :func:`dualmode.recon.schemes.polarization_scheme`).
    drift_order : int or "auto"
        Degree ``P`` of the polynomial drift in shot time regressed out with the
        mean (0: constant background only). ``"auto"`` (default): start from the
        order the scheme cancels (:func:`~dualmode.recon.schemes.cancelled_drift_order`,
        free of noise cost), then add orders up to ``max_auto_order`` while the
        next drift term removes significant residual energy (``z > auto_z``, see
        :func:`_drift_significance`), its efficiency stays ``>= min_efficiency``
        and one residual degree of freedom remains; ``info["drift_tests"]`` lists the tests. A strong
        unmodelled drift can dominate the rank-one fit: ``info["sign_alignment"]``
        (near 1 when ``c_k`` follows the scheme) shows it.
    shot_times : (n_shots,) array, optional
        Acquisition time of each shot (default: shot index).
    shot_noise : None, "estimate" or (n_shots,) array
        Per-shot noise sigma for inverse-variance weighting; ``"estimate"`` takes it
        from the residuals of a first pass (needs ``n_shots >= P + 3``).
    mask : bool array of the image shape, optional
        Voxels used to estimate ``c_k`` (default: chi-square detection of signal).
    robust : bool
        Huber re-weighting of voxels in the rank-one fit.
    n_iter, huber_k, detect_alpha : robust fit iterations, Huber threshold (in
        noise sigmas) and per-voxel false-alarm rate of the signal detection.
    noise_window : int
        Box size (voxels) smoothing the per-voxel noise map.
    register : bool
        Estimate and correct per-shot translations first
        (:func:`dualmode.recon.displacement.correct_motion`, its own step; ``register_kwargs``
        passed on). The pipeline calls that step itself before the lock-in.
    register_kwargs : dict, optional
        Keyword arguments of :func:`dualmode.recon.displacement.estimate_shot_shifts`.
    max_auto_order : int
        Highest drift order ``drift_order="auto"`` may choose.
    auto_z : float
        Significance (z score of the residual energy removed) a further drift order needs.
    min_efficiency : float
        Lowest noise efficiency (:func:`dualmode.recon.schemes.drift_efficiency`) a further
        drift order may cost.

    Returns
    -------
    SignFlipResult
        ``signal`` (``H``), ``background`` (``B``), per-shot weights, noise map and SNR.

    References
    ----------
    .. [1] X. Lv et al., "Background-free dual-mode optical and 13C magnetic resonance imaging
       in diamond particles", PNAS 118(21), e2023579118 (2021).

    Examples
    --------
    A point under a background ten times brighter, in eight shots (``+--+`` twice):

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> h = np.zeros((16, 16))
    >>> h[8, 8] = 1.0
    >>> s = np.array([1, -1, -1, 1, 1, -1, -1, 1])
    >>> noise = rng.normal(size=(8, 16, 16)) + 1j * rng.normal(size=(8, 16, 16))
    >>> lock = signflip_combine(s[:, None, None] * h + 10.0 + 0.01 * noise, s)
    >>> bool(abs(abs(lock.signal[8, 8]) - 1) < 0.05), bool(abs(lock.signal[0, 0]) < 0.05)
    (True, True)
    """
    s, order, auto = _check_inputs(images, polarization, drift_order, shot_times)
    images = np.asarray(images)
    shifts = None
    if register:
        images, shifts = _register_shots(images, s, register_kwargs)
    n, shape = s.size, images.shape[1:]
    m = images.reshape(n, -1)
    fit_args = (mask, robust, n_iter, huber_k, detect_alpha)
    d = _shot_whitening(m, s, order, shot_times, shot_noise, fit_args)
    fit = _fit(m, s, drift_basis(n, order, shot_times), d, *fit_args)
    drift_tests = []
    if auto:
        fit, order, drift_tests = _raise_drift_order(m, s, d, fit, order, shot_times, fit_args,
                                                     max_auto_order, auto_z, min_efficiency)
    return _result(fit, s, d, order, shape, shot_times, noise_window, shifts, drift_tests)


def _check_inputs(images, polarization, drift_order, shot_times) -> tuple[np.ndarray, int, bool]:
    """Validated signs ``s``, the starting drift order and whether it is chosen automatically."""
    s = np.asarray(polarization, dtype=float).ravel()
    n = s.size
    if np.shape(images)[0] != n:
        raise ValueError(f"{np.shape(images)[0]} shots but {n} polarization signs")
    if not np.all(np.abs(s) == 1):
        raise ValueError("polarization signs must be +1 or -1")
    if not (np.any(s > 0) and np.any(s < 0)):
        raise ValueError("need both +1 and -1 shots to cancel the background")
    auto = isinstance(drift_order, str)
    if auto and drift_order != "auto":
        raise ValueError(f"drift_order must be an int or 'auto', got {drift_order!r}")
    if auto:
        drift_order = max(0, min(cancelled_drift_order(s, shot_times), n - 3))
    order = int(drift_order)
    if order < 0 or n < order + 2:
        raise ValueError(f"drift_order {order} needs at least {order + 2} shots, got {n}")
    if drift_efficiency(s, order, shot_times) < 1e-6:
        raise ValueError(f"scheme {scheme_string(s)} cannot separate H from a degree-{order} drift")
    return s, order, auto


def _register_shots(images, s, register_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Motion correction as a step of its own (:func:`dualmode.recon.displacement.correct_motion`)."""
    from .displacement import correct_motion

    motion = correct_motion(images, s, threshold_voxels=0.0, **(register_kwargs or {}))
    return motion.images, motion.shifts


def _shot_whitening(m, s, order, shot_times, shot_noise, fit_args) -> np.ndarray:
    """``d = 1 / sigma_k``: ones, given per-shot noise, or estimated from a first pass."""
    n = s.size
    if isinstance(shot_noise, str) and shot_noise == "estimate":
        if n < order + 3:
            raise ValueError("shot_noise='estimate' needs n_shots >= drift_order + 3")
        first = _fit(m, s, drift_basis(n, order, shot_times), np.ones(n), *fit_args)
        return 1.0 / np.maximum(per_shot_sigma(first), 1e-30)
    if shot_noise is None:
        return np.ones(n)
    sig = np.asarray(shot_noise, dtype=float).ravel()
    if sig.shape != (n,) or np.any(~np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError("shot_noise must be n_shots positive numbers")
    return 1.0 / sig


def _raise_drift_order(m, s, d, fit, order, shot_times, fit_args, max_auto_order, auto_z, min_efficiency):
    """Add drift orders while the next one removes significant residual energy (module docstring)."""
    n, tests = s.size, []
    while order < max_auto_order and n - order - 3 >= 1 \
            and drift_efficiency(s, order + 1, shot_times) >= min_efficiency:
        cand = _fit(m, s, drift_basis(n, order + 1, shot_times), d, *fit_args)
        z = _drift_significance(fit, cand, n - order - 3)
        tests.append({"order": order + 1, "z": z})
        if z < auto_z:
            break
        order, fit = order + 1, cand
    return fit, order, tests


def _result(fit, s, d, order, shape, shot_times, noise_window, shifts, drift_tests) -> SignFlipResult:
    """Step 4 (noise) and the :class:`SignFlipResult` of the final fit."""
    n = s.size
    coef, cov, dof_r = fit["coef"], fit["cov"], n - order - 2
    signal = coef[0].reshape(shape)
    if dof_r >= 1:
        sigma = np.sqrt(_chi2_scale(fit["resid_energy"], dof_r))
        noise_sigma = sigma * np.sqrt(cov[0, 0])
        var = (fit["resid_energy"] / (2 * dof_r)).reshape(shape)
        size = [noise_window if k > 1 else 1 for k in shape]
        noise_map = np.sqrt(scipy.ndimage.uniform_filter(var, size) * cov[0, 0])
    else:
        noise_sigma = robust_noise_sigma(signal)
        sigma = noise_sigma / np.sqrt(cov[0, 0])
        noise_map = np.full(shape, noise_sigma)
    return SignFlipResult(
        signal=signal.astype(np.complex64),
        background=coef[1].reshape(shape).astype(np.complex64),
        shot_weights=s * fit["g"],
        noise_sigma=float(noise_sigma),
        background_sigma=float(sigma * np.sqrt(cov[1, 1])),
        shot_sigma=float(sigma / np.median(d)),
        signal_weights=fit["weights"][0],
        background_weights=fit["weights"][1],
        drift=coef[2:].reshape((order,) + shape).astype(np.complex64),
        drift_order=order,
        noise_map=noise_map.astype(np.float32),
        signal_mask=fit["mask"].reshape(shape),
        polarization=s,
        efficiency=drift_efficiency(s, order, shot_times),
        shifts=shifts,
        info={"per_shot_sigma": per_shot_sigma(fit).tolist() if dof_r >= 1 else None,
              "residual_dof": dof_r, "sign_alignment": fit["sign_alignment"],
              "tau": normalized_times(n, shot_times).tolist(), "drift_tests": drift_tests},
    )


def _drift_significance(fit: dict, candidate: dict, dof_new: int) -> float:
    """z-score of adding one drift order: residual energy it removes vs the noise level.

    ``R_P`` and ``R_{P+1}`` are the per-voxel residual energies of the two complete fits
    (rank-one included: a strong drift can capture the rank-one fit of the lower order,
    so the candidate is refitted rather than tested on the old residual). Without drift
    ``R_P - R_{P+1}`` is one complex dimension of noise, so
    ``F = mean(R_P - R_{P+1}) / mean(R_{P+1} / dof_new)`` is 1 and
    ``z = (F - 1) / sqrt((1 + 1 / dof_new) / V)`` over all ``V`` voxels (particles
    included: the gain of a captured fit shows there; voxels that break the rank-one
    model, such as flow, can only add a small false gain, at a small noise cost).
    """
    gain = fit["resid_energy"] - candidate["resid_energy"]
    noise = candidate["resid_energy"] / dof_new
    f = gain.mean() / max(noise.mean(), 1e-300)
    return float((f - 1) / np.sqrt((1 + 1 / dof_new) / gain.size))
