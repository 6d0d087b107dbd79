"""Sign-flip lock-in for every acquisition kind: full Cartesian, undersampled Cartesian, non-Cartesian.

The lock-in estimate ``H = sum_k w_k I_k`` is linear in the shots, so it can equally be
formed in k-space: ``y_H = sum_k w_k y_k``, one reconstruction instead of one per shot.
We therefore

1. reconstruct every shot cheaply and linearly (FFT, or zero-filled / density-compensated
   gridding for undersampled and non-Cartesian data),
2. estimate the per-shot complex polarization and the weights ``w_k`` on those images
   (:func:`dualmode.recon.signflip.signflip_combine`),
3. combine the *k-space* with the same weights, which cancels the background before the
   nonlinear step, and
4. reconstruct ``H`` once from the combined data: L1-regularised (FISTA, identity
   sparsifying transform: particles are sparse in image space) then debiased by least
   squares on the support it finds, for undersampled Cartesian; least squares by CG on the NUFFT normal operator (Toeplitz) for
   non-Cartesian trajectories.

Fully sampled Cartesian data skip step 4 (the FFT is already exact), and so do non-Cartesian
acquisitions whose samples are every point of the Cartesian grid once (single-point imaging,
:func:`on_grid`): they are placed on the grid and reconstructed by the same exact DFT. The damped
least squares of step 4 would scale their amplitudes by ``N / (N + damping)`` (5 % low at the
damping ``0.05 N`` that the radial and spiral reconstructions need against their poorly sampled
k-space corners).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dualmode.conventions import ifft_centered
from dualmode.kspace import KSpace

from .cartesian import reconstruct_repetitions
from .coils import svd_combine
from .hyperpolarized import correct_rf_depletion, depletion_applies, excitation_weights
from .signflip import SignFlipResult, robust_noise_sigma, signflip_combine


def _image_shape(ksp: KSpace) -> tuple[int, ...]:
    return tuple(ksp.header.matrix)


def _noncartesian_coords(ksp: KSpace) -> np.ndarray:
    nd = 2 if ksp.header.matrix[2] == 1 else 3
    return ksp.coords[:, :nd]


def _readout_weights(ksp: KSpace) -> np.ndarray | None:
    """RF-depletion weight of every sample of a non-Cartesian shot (one excitation per readout)."""
    h = ksp.header
    if not h.flip_angle_deg or "readout_length" not in h.extra:
        return None
    n_read = int(h.extra["readout_length"])
    w = excitation_weights(ksp.data.shape[-1] // n_read, h.flip_angle_deg, h.tr_ms or 0.0)
    return np.repeat(w / w.mean(), n_read)


def _prepared_kspace(ksp: KSpace, rf_correction: bool, t1_s: float, hyperpolarized: bool = True) -> np.ndarray:
    """k-space ``(rep, coil, ...)`` with the RF-depletion weighting divided out (hyperpolarized data only)."""
    h, data = ksp.header, ksp.data
    if not rf_correction or not depletion_applies(h.flip_angle_deg, hyperpolarized):
        return data
    if h.trajectory == "cartesian" and h.line_order is not None:
        return correct_rf_depletion(data, h.line_order, h.flip_angle_deg, h.tr_ms or 0.0, t1_s)
    w = _readout_weights(ksp) if h.trajectory != "cartesian" else None
    return data if w is None else data / w.astype(np.float32)


def shot_images(ksp: KSpace, data: np.ndarray, *, dcf: np.ndarray | None = None) -> np.ndarray:
    """Linear per-shot images ``(rep, i, j, k)`` for any sampling (scaled like the full FFT).

    Undersampled Cartesian: zero-filled, divided by the sampled fraction. Non-Cartesian:
    density-compensated adjoint NUFFT (the weights of :mod:`dualmode.recon.dcf` include
    ``1 / prod(N)``, so a fully sampled grid would give ``ifft_centered``).
    """
    shape = _image_shape(ksp)
    if ksp.header.trajectory == "cartesian":
        images = ifft_centered(data, axes=(-3, -2, -1))
        if ksp.mask is not None:
            images = images / ksp.mask.mean()
    else:
        from .trajectory_cache import cached_plan

        weighted = data / np.prod(shape) if dcf is None else data * dcf
        plan = cached_plan(_noncartesian_coords(ksp), shape)
        images = plan.adjoint(weighted.reshape(-1, weighted.shape[-1])).reshape(*data.shape[:2], *shape)
    return svd_combine(images, coil_axis=1).astype(np.complex64)


def motion_step(shots: np.ndarray, polarization, *, threshold_voxels: float = 0.05):
    """Shot displacement: estimated on the per-shot images, kept only if it helps the lock-in.

    A correction is accepted when some shot moved more than ``threshold_voxels`` (see
    :func:`~dualmode.recon.displacement.correct_motion`) *and* the mean residual energy of the
    lock-in model, ``RSS = sum |S_k - model_k|^2`` over all voxels and shots, drops by more than
    ``p`` fitted shift parameters would remove from pure noise: ``(RSS_0 - RSS_1) / sigma^2 >
    p + 4 sqrt(2 p)`` (the mean of chi-square with ``p`` degrees of freedom plus 4 standard
    deviations; ``sigma`` the lock-in's per-component shot noise). The data decide: where ``H``
    and ``B`` overlap the magnitude registration can be biased by ~0.2 voxel, and along an
    axis on which the background does not change (a 3D slab uniform in z) it can be off by
    voxels. The sum, not the robust ``shot_sigma`` (a median over voxels), because a wrong
    shift shows in the few particle voxels: shifts of 1.6 voxel in z on a still 3D folder
    lowered ``shot_sigma`` by 0.3 % (noise) while they raised the RSS by 3 % and, accepted,
    halved ``H``. Both fits use the drift order the corrected shots choose (uncorrected shots
    choose a higher one that absorbs part of the motion, and its smaller RSS refused real
    corrections). Measured drops: 1700-6500 sigma^2 for 5-50 µm motion in 2D at a background
    10x the particles; -10 to +4 for noise-only shifts on still folders.
    Returns ``(MotionCorrection, accepted, lock_in)``: ``lock_in`` is the automatic-order
    :func:`signflip_combine` of the shots to keep (the corrected ones if accepted), reused by
    the caller, or ``None`` when no shot moved more than the threshold (nothing was fitted).
    """
    from .displacement import correct_motion

    motion = correct_motion(shots, polarization, threshold_voxels=threshold_voxels)
    if not motion.corrected:
        return motion, False, None
    after = signflip_combine(motion.images, polarization)
    still = signflip_combine(shots, polarization)  # the lock-in if the correction is refused
    # the same model for both: uncorrected shots choose a higher drift order that absorbs part of the motion
    before = still if still.drift_order == after.drift_order else \
        signflip_combine(shots, polarization, drift_order=after.drift_order)
    rss = [float(np.sum(np.abs(s - fit.model_shots()) ** 2)) for s, fit in ((shots, before), (motion.images, after))]
    n_params = (shots.shape[0] - 1) * sum(n > 1 for n in shots.shape[1:])
    drop = (rss[0] - rss[1]) / max(after.shot_sigma, 1e-30) ** 2
    needed = float(n_params + 4 * np.sqrt(2 * n_params))
    motion.report.update({"residual_sigma_before": before.shot_sigma, "residual_sigma_after": after.shot_sigma,
                          "residual_drop_sigma2": drop, "residual_drop_needed": needed})
    accepted = bool(drop > needed)
    return motion, accepted, (after if accepted else still)


def _shift_kspace(ksp: KSpace, data: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each shot's k-space by ``shifts[k]`` voxels (linear phase, any trajectory)."""
    from .displacement import kspace_shift_phase

    shape = _image_shape(ksp)
    if ksp.header.trajectory == "cartesian":
        coords = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), axis=-1)
    else:
        coords = np.zeros((ksp.coords.shape[0], 3))
        coords[:, :ksp.coords.shape[1]] = ksp.coords
    out = np.array(data, copy=True)
    for k, shift in enumerate(shifts):
        full = np.zeros(3)
        full[:len(shift)] = shift
        out[k] *= kspace_shift_phase(coords, full, shape).astype(out.dtype)
    return out


def lockin_reconstruct(ksp: KSpace, polarization, *, rf_correction: bool = True, t1_s: float = np.inf,
                       lam_sigma: float = 1.5, max_iter: int = 60,
                       hyperpolarized: bool = True, motion: bool = True) -> tuple[SignFlipResult, np.ndarray]:
    """Background-free ``H`` and background ``B`` from any acquisition.

    Parameters
    ----------
    ksp : KSpace
        Cartesian (full or with ``mask``) or non-Cartesian (``coords``) k-space.
    polarization : sequence of +1/-1
        Sign of each repetition.
    rf_correction : bool
        Divide out the RF-depletion weighting (needs flip angle and line/readout order).
    hyperpolarized : bool
        ``False`` for thermal-equilibrium data: the depletion model never applies. For
        hyperpolarized data a flip angle >= 90 deg raises ``ValueError``.
    lam_sigma : float
        L1 threshold for undersampled Cartesian data, in units of the noise sigma of ``H``.
    max_iter : int
        Iterations of FISTA / CG.
    motion : bool
        Estimate shot displacement and correct it when significant (:func:`motion_step`);
        the outcome is in ``result.info["motion"]`` and ``result.shifts``.

    Returns
    -------
    result : SignFlipResult
        ``signal`` H, ``background`` B, per-shot weights, noise sigma.
    shots : ndarray
        The linear per-shot images used to estimate the weights (for QC).
    """
    h = ksp.header
    if h.trajectory == "cartesian" and ksp.mask is None:
        shots = reconstruct_repetitions(ksp, rf_correction=rf_correction, t1_s=t1_s, hyperpolarized=hyperpolarized)
        return _lock_in_shots(shots, polarization, motion, "dft")
    data = _prepared_kspace(ksp, rf_correction, t1_s, hyperpolarized)
    gridded = None if h.trajectory == "cartesian" else on_grid(ksp, data)
    if gridded is not None:  # single-point imaging: the Cartesian grid in another order, an exact DFT
        shots = svd_combine(ifft_centered(gridded, axes=(-3, -2, -1)), coil_axis=1).astype(np.complex64)
        return _lock_in_shots(shots, polarization, motion, "dft of the samples on the grid")
    dcf = None
    if h.trajectory != "cartesian":
        from .trajectory_cache import cached_dcf

        dcf = cached_dcf(_noncartesian_coords(ksp), _image_shape(ksp))
    shots = shot_images(ksp, data, dcf=dcf)
    moved, motion_info, first = _motion(shots, polarization, motion)
    if moved is not None:  # correct the k-space itself: H and B are reconstructed from it
        data = _shift_kspace(ksp, data, moved.shifts)
        shots = shot_images(ksp, data, dcf=dcf)
        first = None  # fitted on the image-domain correction; refit on the shifted k-space
    if first is None:
        first = signflip_combine(shots, polarization)
    first = dataclasses.replace(first, shifts=None if moved is None else moved.shifts,
                                info={**first.info, "motion": motion_info,
                                      "reconstruction": "l1 + debiased least squares" if h.trajectory == "cartesian"
                                      else "damped least squares (nufft)"})
    # the lock-in weights (drift terms included) applied to k-space: H and B data
    coil_data = np.tensordot(first.signal_weights, data, axes=(0, 0))
    b_data = np.tensordot(first.background_weights, data, axes=(0, 0))
    signal, residual = _reconstruct_combined(ksp, coil_data, first.noise_sigma, lam_sigma, max_iter, dcf)
    background = shot_images(ksp, b_data[None], dcf=dcf)[0]
    # noise of H: least squares (non-Cartesian) is linear, its noise floor is measured on the
    # image; the L1 image has none, so use its data-consistency residual gridded like the shots
    if h.trajectory == "cartesian":
        sigma = robust_noise_sigma(shot_images(ksp, residual[None, None], dcf=dcf)[0])
    else:
        sigma = robust_noise_sigma(signal)
    # everything the lock-in estimated (weights, drift order, efficiency, tests) carries over;
    # H, B and the noise come from the k-space reconstruction
    return dataclasses.replace(first, signal=signal.astype(np.complex64), background=background.astype(np.complex64),
                               noise_sigma=sigma, noise_map=None), shots


def on_grid(ksp: KSpace, data: np.ndarray) -> np.ndarray | None:
    """Non-Cartesian ``data (rep, coil, sample)`` whose samples are every point of the Cartesian grid once
    (single-point imaging, any order) placed on the grid ``(rep, coil, *matrix)``; ``None`` otherwise.

    Such an acquisition is Cartesian: its least-squares image is the inverse DFT, exactly
    (``A^H A = N I``), without the damping the iterative non-Cartesian solver needs, which
    would scale every amplitude by ``N / (N + damping)``.
    """
    shape = _image_shape(ksp)
    if ksp.coords is None or ksp.coords.shape[0] != np.prod(shape) or data.shape[-1] != ksp.coords.shape[0]:
        return None
    coords = np.zeros((ksp.coords.shape[0], 3))
    coords[:, :ksp.coords.shape[1]] = ksp.coords
    index = np.rint(coords)
    if not np.allclose(coords, index, atol=1e-6):
        return None
    index = index.astype(int) + np.asarray(shape) // 2
    if np.any(index < 0) or np.any(index >= np.asarray(shape)):
        return None
    flat = np.ravel_multi_index(tuple(index.T), shape)
    if np.unique(flat).size != flat.size:
        return None
    out = np.zeros((*data.shape[:-1], flat.size), dtype=np.result_type(data.dtype, np.complex64))
    out[..., flat] = data
    return out.reshape(*data.shape[:-1], *shape)


def _lock_in_shots(shots, polarization, motion: bool, how: str) -> tuple[SignFlipResult, np.ndarray]:
    """Lock-in of image-domain shots (motion corrected on the images when it helps); returns
    the result and the shots it combined."""
    moved, info, result = _motion(shots, polarization, motion)
    if moved is not None:
        shots = moved.images
    if result is None:
        result = signflip_combine(shots, polarization)
    return dataclasses.replace(result, shifts=None if moved is None else moved.shifts,
                               info={**result.info, "motion": info, "reconstruction": how}), shots


def _motion(shots, polarization, enabled: bool):
    """``(MotionCorrection or None, report, lock-in or None)``: the correction if accepted, what
    was found, and the lock-in of the shots kept if :func:`motion_step` fitted it."""
    if not enabled:
        return None, {"estimated": False}, None
    motion, accepted, lock_in = motion_step(shots, polarization)
    return (motion if accepted else None), {"estimated": True, **motion.report, "corrected": accepted}, lock_in


def _reconstruct_combined(ksp, coil_data, sigma, lam_sigma, max_iter, dcf):
    """One reconstruction of the lock-in k-space ``coil_data (coil, ...)`` (coils by SVD first).

    Returns the image and the k-space residual ``y - A x``.
    """
    shape = _image_shape(ksp)
    y = svd_combine(coil_data[None], coil_axis=1)[0] if coil_data.shape[0] > 1 else coil_data[0]
    n = float(np.prod(shape))
    if ksp.header.trajectory == "cartesian":
        from .iterative import fista
        from .linop import FFTOp

        mask = np.broadcast_to(ksp.mask[None], shape)
        op = FFTOp(shape, mask=mask)
        thresh = lam_sigma * sigma

        def prox(v, t):  # soft threshold of the complex image, t = step = 1/L, L = N
            mag = np.abs(v)
            return v * np.maximum(1 - thresh / np.maximum(mag, 1e-30), 0)

        x = fista(op, y * mask, prox, max_iter=max_iter)
        # debias: least squares on the support found by L1 (soft thresholding shrinks amplitudes)
        from scipy import ndimage

        from .iterative import least_squares
        from .linop import RestrictOp

        support = ndimage.binary_dilation(np.abs(x) > 0)
        if 0 < support.sum() < 0.5 * mask.sum():
            sub = RestrictOp(op, support)
            x = sub.embed(least_squares(sub, y * mask, max_iter=30, x0=x[support], tol=1e-6))
        return x, (y - op.forward(x)) * mask
    from .iterative import least_squares
    from .linop import NUFFTOp

    coords = _noncartesian_coords(ksp)
    op = NUFFTOp(coords, shape)
    x0 = shot_images(ksp, y[None, None], dcf=dcf)[0]
    x = least_squares(op, y, damping=0.05 * n, max_iter=max_iter, x0=x0, tol=1e-4)
    return x, y - op.forward(x)
