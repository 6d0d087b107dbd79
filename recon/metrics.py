"""Metrics and QC panels proving background-free imaging, without ground truth.

Regions are defined from the estimates themselves (the pipeline has no truth):

* ``signal``: particles, ``|H - lambda B| > k sigma_H`` (``sigma_H`` the
  per-component noise of ``H``; ``|H|`` of pure noise is Rayleigh,
  ``P(|H| > 5 sigma) = 4e-6``). ``lambda`` is the fraction of ``B`` left in ``H``,
  the median of ``H / B`` over strong-background voxels (robust to particles that
  cover less than half of them): a background leak is thus never mistaken for
  particles and shows up in the residual below. It is also reported
  (``background_leak_fraction``, and ``background_leak_sigma`` = its RMS over the
  background-only region in noise sigmas).
* ``signal zone``: the signal region dilated by ``margin`` voxels (PSF tails);
  excluded from the two regions below, so any selection bias of the ``|H|``
  threshold is the same for both and cancels in their difference.
* ``background-only``: ``|B| > k sigma_B`` outside the signal zone, where the
  lock-in must remove a real sign-invariant signal.
* ``empty``: ``|B| < k sigma_B`` outside the signal zone: the noise floor.

From them (all JSON-friendly floats):

* ``residual_background_sigma = (mean_bg |H| - mean_empty |H|) / sigma_H``: what
  the background left in ``H``, in noise sigmas (0 when perfectly removed; the
  Rayleigh noise floor is subtracted by the empty region).
* ``background_energy_before/after``: mean ``|I|^2`` over the background-only region
  of the naive image (mean of the + shots: what one gets without sign flipping)
  and of ``H``; ``background_suppression_db = 10 log10(before / after)``. ``after``
  includes the noise floor, so the dB value is a lower bound once the residual is
  at the noise level (``noise_limited``).
* ``particle_snr`` (mean ``|H|`` over the signal over ``sigma_H``), ``peak_snr``,
  ``cnr_before/after = (mean_signal - mean_bg) / std_bg`` of the naive image and of
  ``H``, ``std_bg`` the spatial standard deviation over the background-only region
  (background structure plus noise before, noise only after; negative before when
  the background outshines the particles), and
  ``signal_to_background_before/after`` = mean over the signal / RMS over the
  background-only region.
* ``h_component_in_background``: ``lambda`` of ``B = lambda H + b_j`` over the
  signal zone with one offset ``b_j`` per particle (the smooth real background under
  it): the H-shaped part of ``B``, i.e. the unobservable mean + vs - polarization
  asymmetry ``(c+ - c-) / 2`` (see :mod:`dualmode.recon.signflip`) plus any real
  H-shaped sign-invariant structure, such as the medium displaced by a particle.

The optical metrics apply the same ideas to the NV lock-in image: particles
``nv > k sigma``, background outside their dilation, signal-to-background (mean over
particles / RMS over background) and CNR of the mean frame (before) and of ``nv``.
"""

from __future__ import annotations

import numpy as np

from dualmode.serialize import jsonable
import scipy.ndimage

from .schemes import describe_scheme


def _dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    if margin <= 0 or not mask.any():
        return mask
    structure = scipy.ndimage.generate_binary_structure(mask.ndim, 1)
    for ax, n in enumerate(mask.shape):  # no growth along singleton axes
        if n == 1:
            structure = np.take(structure, [1], axis=ax)
    return scipy.ndimage.binary_dilation(mask, structure, iterations=margin)


def _middle_slice(vol: np.ndarray) -> np.ndarray:
    vol = np.asarray(vol)
    return vol[..., vol.shape[-1] // 2] if vol.ndim == 3 else vol


def _mean(x, mask):
    return float(np.mean(x[mask])) if mask.any() else None




def background_leak(result, k: float = 5.0) -> complex:
    """Robust fraction ``lambda`` of ``B`` left in ``H``: median of ``H conj(B) / |B|^2`` where ``|B| > k sigma_B``.

    The median ignores the particles as long as they cover less than half of the
    strong-background voxels, so no signal mask is needed (0 for a perfect lock-in).
    """
    sigma_b = result.background_sigma if np.isfinite(result.background_sigma) else result.noise_sigma
    strong = np.abs(result.background) > k * sigma_b
    if not strong.any():
        return 0j
    ratio = result.signal[strong] * np.conj(result.background[strong]) / np.abs(result.background[strong]) ** 2
    return complex(np.median(ratio.real), np.median(ratio.imag))


def h_component_in_background(result, zone: np.ndarray) -> complex | None:
    """``lambda`` in ``B = lambda H + b_j`` over the signal zone, ``b_j`` one offset per particle.

    The per-particle offsets (connected components of ``zone``) absorb the smooth real
    background under each particle, so ``lambda`` is the H-shaped part of ``B``: the
    unobservable mean asymmetry ``(c+ - c-) / 2`` (Frisch-Waugh: demean ``H`` and ``B``
    within each component, then project).
    """
    if not zone.any():
        return None
    labels, n_lab = scipy.ndimage.label(zone)
    idx = np.arange(1, n_lab + 1)
    lab = labels[zone]

    def demean(x):
        v = x[zone]
        mean = np.asarray(scipy.ndimage.mean(v.real, lab, idx)) + 1j * np.asarray(scipy.ndimage.mean(v.imag, lab, idx))
        return v - mean[lab - 1]

    hd, bd = demean(result.signal), demean(result.background)
    denom = np.vdot(hd, hd).real
    return None if denom <= 0 else complex(np.vdot(hd, bd) / denom)


def signflip_regions(result, k: float = 5.0, margin: int = 2) -> dict[str, np.ndarray]:
    """Boolean masks ``signal``, ``signal_zone``, ``background_only``, ``empty`` (see module doc).

    ``signal`` is detected on ``H - lambda B`` (:func:`background_leak`) so that a
    background leaking into ``H`` is counted as background, not as particles.
    """
    leak = background_leak(result, k)
    signal = np.abs(result.signal - leak * result.background) > k * result.noise_sigma
    zone = _dilate(signal, margin)
    sigma_b = result.background_sigma if np.isfinite(result.background_sigma) else result.noise_sigma
    strong_b = np.abs(result.background) > k * sigma_b
    return {
        "signal": signal,
        "signal_zone": zone,
        "background_only": strong_b & ~zone,
        "empty": ~strong_b & ~zone,
    }


def naive_image(images: np.ndarray, polarization) -> np.ndarray:
    """Mean of the + shots: the image without sign-flip lock-in."""
    s = np.asarray(polarization, dtype=float)
    return np.asarray(images)[s > 0].mean(axis=0)


def signflip_metrics(images: np.ndarray, polarization, result, k: float = 5.0, margin: int = 2,
                     voxel_size=None) -> dict:
    """Background-suppression metrics of a :class:`~dualmode.recon.signflip.SignFlipResult`.

    Parameters
    ----------
    images : complex ndarray, shape (n_shots, ...)
        The per-shot images that were combined (after any shift correction).
    polarization : sequence of +1/-1
    result : SignFlipResult
    k, margin : region thresholds (noise sigmas) and signal-zone dilation (voxels).
    voxel_size : sequence of float, optional
        To report shot shifts in mm.

    Returns
    -------
    dict of JSON-friendly values (``None`` where a region is empty).
    """
    s = np.asarray(polarization, dtype=float)
    reg = signflip_regions(result, k, margin)
    sig, bg, empty = reg["signal"], reg["background_only"], reg["empty"]
    h = np.abs(result.signal)
    naive = np.abs(naive_image(images, s))
    sigma_h = float(result.noise_sigma)
    shot_sigma = result.shot_sigma if np.isfinite(result.shot_sigma) else np.nan
    out = {
        "scheme": describe_scheme(s),
        "drift_order": int(result.drift_order),
        "drift_efficiency": float(result.efficiency),
        "sign_alignment": (result.info or {}).get("sign_alignment"),
        "noise_sigma_H": sigma_h,
        "noise_sigma_shot": shot_sigma,
        "noise_sigma_H_theory": shot_sigma / np.sqrt(s.size),
        "n_voxels": {name: int(m.sum()) for name, m in reg.items()},
        "peak_snr": float(result.snr),
        "particle_snr": None if not sig.any() else _mean(h, sig) / sigma_h,
    }
    mh_bg, mh_empty = _mean(h, bg), _mean(h, empty)
    out["residual_background_sigma"] = (
        None if mh_bg is None or mh_empty is None else (mh_bg - mh_empty) / sigma_h)
    e_before, e_after = _mean(naive**2, bg), _mean(h**2, bg)
    out["background_energy_before"] = e_before
    out["background_energy_after"] = e_after
    out["background_suppression_db"] = (
        None if e_before is None or not e_after else float(10 * np.log10(e_before / e_after)))
    out["noise_limited"] = None if out["residual_background_sigma"] is None else bool(
        out["residual_background_sigma"] < 2.0)
    sd_naive = float(np.std(naive[bg])) if bg.any() else 0.0
    sd_h = float(np.std(h[bg])) if bg.any() else 0.0
    if sig.any() and bg.any() and sd_naive > 0 and sd_h > 0 and e_before and e_after:  # a 1-voxel region has no spread
        out["cnr_before"] = (_mean(naive, sig) - _mean(naive, bg)) / sd_naive
        out["cnr_after"] = (_mean(h, sig) - mh_bg) / sd_h
        out["signal_to_background_before"] = _mean(naive, sig) / np.sqrt(e_before)
        out["signal_to_background_after"] = _mean(h, sig) / np.sqrt(e_after)
    else:
        out.update(cnr_before=None, cnr_after=None, signal_to_background_before=None,
                   signal_to_background_after=None)
    lam = h_component_in_background(result, reg["signal_zone"])
    out["h_component_in_background"] = None if lam is None else {
        "abs": float(abs(lam)), "phase_deg": float(np.degrees(np.angle(lam)))}
    leak = background_leak(result, k)
    out["background_leak_fraction"] = {"abs": float(abs(leak)), "phase_deg": float(np.degrees(np.angle(leak)))}
    out["background_leak_sigma"] = (
        None if not bg.any() else float(abs(leak) * np.sqrt(np.mean(np.abs(result.background[bg]) ** 2)) / sigma_h))
    c = np.asarray(result.shot_weights)
    out["shot_weights"] = {"abs": np.round(np.abs(c), 4).tolist(),
                           "phase_deg": np.round(np.degrees(np.angle(c)), 2).tolist()}
    if result.shifts is not None:
        from .displacement import shift_report

        out["shot_shifts"] = shift_report(result.shifts, voxel_size)
    return jsonable(out)


def optical_regions(result, k: float = 5.0, margin: int = 2) -> dict[str, np.ndarray]:
    """``particles`` (``nv > k sigma``, per-pixel noise map) and ``background`` (outside their dilation)."""
    particles = result.nv > k * np.maximum(result.noise_map, 1e-30)
    return {"particles": particles, "background": ~_dilate(particles, margin)}


def optical_metrics(frames: np.ndarray, result, k: float = 5.0, margin: int = 2) -> dict:
    """Signal-to-background and CNR of the mean frame (before) and of the NV image (after)."""
    reg = optical_regions(result, k, margin)
    p, bg = reg["particles"], reg["background"]
    before = np.asarray(frames).mean(axis=0)
    out = {
        "n_frames": int(np.asarray(frames).shape[0]),
        "n_pixels": {name: int(m.sum()) for name, m in reg.items()},
        "noise_sigma_nv": float(result.noise_sigma),
        "modulation_depth_particles": _mean(result.contrast, p),
        "bleaching": {key: val for key, val in result.info.items() if key in ("model", "tau_frames", "order")},
    }
    if not (p.any() and bg.any()):
        out.update(signal_to_background_before=None, signal_to_background_after=None,
                   cnr_before=None, cnr_after=None, improvement_db=None)
        return jsonable(out)
    rms_before = float(np.sqrt(np.mean(before[bg] ** 2)))
    rms_after = float(np.sqrt(np.mean(result.nv[bg] ** 2)))
    sbr_before = _mean(before, p) / rms_before
    sbr_after = _mean(result.nv, p) / rms_after
    out["signal_to_background_before"] = sbr_before
    out["signal_to_background_after"] = sbr_after
    out["improvement_db"] = float(20 * np.log10(sbr_after / sbr_before))
    out["cnr_before"] = (_mean(before, p) - _mean(before, bg)) / float(np.std(before[bg]))
    out["cnr_after"] = (_mean(result.nv, p) - _mean(result.nv, bg)) / float(np.std(result.nv[bg]))
    out["autofluorescence_fraction"] = float(np.clip(1 - np.sum(result.nv[p]) / np.sum(result.unmodulated[p]), 0, 1)) \
        if result.info.get("nv_contrast") else None
    return jsonable(out)


def signflip_panels(images: np.ndarray, polarization, result) -> dict[str, np.ndarray]:
    """Middle-slice magnitude images ``[x, y]`` for the QC figure: S+, S-, H, B.

    ``S+`` / ``S-`` are the means of the + / - shots, on the same scale as ``H`` and
    ``B``. Arrays are indexed ``[x, y]``: transpose for ``imshow`` (origin lower).
    """
    s = np.asarray(polarization, dtype=float)
    images = np.asarray(images)
    return {
        "S+": _middle_slice(np.abs(images[s > 0].mean(axis=0))).astype(np.float32),
        "S-": _middle_slice(np.abs(images[s < 0].mean(axis=0))).astype(np.float32),
        "H": _middle_slice(np.abs(result.signal)).astype(np.float32),
        "B": _middle_slice(np.abs(result.background)).astype(np.float32),
    }


def optical_panels(frames: np.ndarray, result) -> dict[str, np.ndarray]:
    """Middle-slice images ``[x, y]``: mean frame (before), NV lock-in, autofluorescence, contrast."""
    return {
        "mean frame": _middle_slice(np.asarray(frames).mean(axis=0)).astype(np.float32),
        "NV lock-in": _middle_slice(result.nv).astype(np.float32),
        "autofluorescence": _middle_slice(result.autofluorescence).astype(np.float32),
        "modulation depth": _middle_slice(result.contrast).astype(np.float32),
    }
