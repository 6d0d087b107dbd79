"""Pipeline steps of quantitative 13C: the off-resonance readout shift and the per-particle amplitudes.

Steps of :func:`dualmode.pipeline.analyse_folder` (kept here so that the pipeline module
stays short); see :mod:`dualmode.recon.quantify` for the methods.
"""

from __future__ import annotations

import numpy as np

from dualmode.volume import Volume


def off_resonance_step(acq, lock):
    """Readout shift of an off-resonant signal, from the manifest (``mri.off_resonance_hz``, ``mri.dwell_us``).

    A frequency offset ``df`` moves a Cartesian image by ``df * dwell * N`` voxels along the
    readout (array axis 0): a pure translation, which one echo cannot tell apart from the
    sample's position, so it is taken from the manifest, corrected in ``H`` and ``B`` by a
    Fourier shift, and reported. Radial and spiral readouts blur instead (reported, not corrected).
    Returns ``(lock, report)``.
    """
    import dataclasses

    from dualmode.recon.displacement import correct_shot_shifts

    mri = (acq.manifest or {}).get("mri", {})
    hz, dwell = mri.get("off_resonance_hz"), mri.get("dwell_us")
    if not hz or not dwell:
        return lock, {"source": "none", "readout_shift_voxels": 0.0}
    shift = float(hz) * float(dwell) * 1e-6 * acq.kspace.header.matrix[0]
    rep = {"source": "manifest", "off_resonance_hz": float(hz), "dwell_us": float(dwell),
           "readout_shift_voxels": shift, "corrected": acq.kspace.header.trajectory == "cartesian"}
    if not rep["corrected"]:
        return lock, rep
    back = np.zeros((2, lock.signal.ndim))
    back[:, 0] = -shift
    fixed = correct_shot_shifts(np.stack([lock.signal, lock.background]), back)
    return dataclasses.replace(lock, signal=fixed[0].astype(np.complex64),
                               background=fixed[1].astype(np.complex64)), rep


def quantify_step(acq, lock, affine: np.ndarray, opts):
    """``c13_phased``, detection at a stated false-alarm rate, amplitudes (:mod:`dualmode.recon.quantify`).

    A non-Cartesian acquisition's particle model is limited to the k-space its trajectory
    sampled (:func:`~dualmode.recon.quantify.sampled_k_max`; ``report["k_max"]``).
    Returns ``(Volume, Amplitudes, report)``; positions in the report are RAS mm.
    """
    from dualmode.recon.quantify import quantify_image, sampled_k_max

    ksp = acq.kspace
    k_max = None if ksp.coords is None else sampled_k_max(ksp.coords, ksp.header.matrix)
    phased, amps, report = quantify_image(lock.signal, lock.noise_sigma, affine,
                                          float(acq.particle_diameter_um or 200.0) / 1000.0,
                                          false_alarms_per_image=opts.false_alarms_per_image, k_max=k_max)
    return Volume(phased, affine), amps, report


#: PSF FWHM (voxels) along the readout above which an undeconvolved T2* blur flags the folder
T2STAR_FLAG_FWHM = 1.4


def t2star_step(acq, lock, opts):
    """T2* point-spread function along the readout, deconvolved when asked (:mod:`dualmode.recon.t2star`).

    Needs ``mri.t2star_ms`` and ``mri.dwell_us`` in the manifest; reports the PSF FWHM (voxels)
    and, with ``opts.t2star_deconvolution`` on a Cartesian readout, Wiener-deconvolves ``H``
    along array axis 0 (integrated amplitude kept, noise sigma times the reported gain). Not asked
    and the FWHM above :data:`T2STAR_FLAG_FWHM`: ``report["flag"]`` says why the amplitudes cannot
    be vouched for (the pipeline adds it to ``report.json["flags"]``).
    Returns ``(lock, report)``.
    """
    import dataclasses

    from dualmode.recon.t2star import deconvolve_readout, psf_fwhm_voxels

    mri = (acq.manifest or {}).get("mri", {})
    t2, dwell = mri.get("t2star_ms"), mri.get("dwell_us")
    asked = bool(getattr(opts, "t2star_deconvolution", False))
    if not t2 or not dwell:
        why = "the manifest gives no mri.t2star_ms and mri.dwell_us" if asked else None
        return lock, {"t2star_ms": t2, "deconvolved": False, **({"reason": why} if why else {})}
    n, dwell_ms = acq.kspace.header.matrix[0], float(dwell) * 1e-3
    rep = {"t2star_ms": float(t2), "dwell_us": float(dwell), "readout_ms": n * dwell_ms,
           "psf_fwhm_voxels": psf_fwhm_voxels(n, dwell_ms, float(t2)), "deconvolved": False}
    if not asked:
        if rep["psf_fwhm_voxels"] > T2STAR_FLAG_FWHM:  # sphere-PSF amplitudes biased, sigma uncalibrated
            rep["flag"] = (f"T2* = {float(t2):g} ms widens the readout PSF to {rep['psf_fwhm_voxels']:.2f} voxels: "
                           "per-particle amplitudes and their sigma are not to be trusted (docs/quantitative.md); "
                           "--t2star-deconvolution (PipelineOptions.t2star_deconvolution) undoes it")
        return lock, rep
    if acq.kspace.header.trajectory != "cartesian":
        return lock, {**rep, "reason": "deconvolution models a Cartesian readout along axis 0 only"}
    signal, info = deconvolve_readout(lock.signal, dwell_ms, float(t2), axis=0)
    gain = info["noise_gain"]
    noise_map = None if lock.noise_map is None else lock.noise_map * gain
    rep.update(deconvolved=True, noise_gain=gain, psf_fwhm_voxels_after=info["psf_fwhm_voxels_after"],
               wiener_lambda=info["lambda"])
    return dataclasses.replace(lock, signal=signal.astype(np.complex64), noise_sigma=lock.noise_sigma * gain,
                               noise_map=noise_map), rep
