"""The whole path for one acquisition folder, as named steps that build one :class:`FolderResult`.

read -> reconstruct every shot and lock in (complex, per-shot amplitude and phase
estimated) -> background-free 13C image, background image, SNR -> optical lock-in
(modulated frames) -> particle detection in both modes, matching, SimpleITK refinement
-> optics resampled once onto the fused grid. :func:`dualmode.outputs.write_outputs`
then writes every file under ``OUT/<folder name>/`` from the result.

Examples
--------
>>> from dualmode import process_folder                     # doctest: +SKIP
>>> result = process_folder("my-acq")                       # doctest: +SKIP
>>> result.c13, result.report["signflip"]["snr"]            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dualmode.conventions import voxel_sizes
from dualmode.volume import Volume

from .provenance import input_checksums, peak_rss_mb, versions
from .quantitative import off_resonance_step, quantify_step, t2star_step

log = logging.getLogger("dualmode")

OUTPUT_FILES = (
    "c13.nii.gz", "background.nii.gz", "fused.nii.gz", "fused.ome.tif", "registration.json",
    "fused.ome.zarr", "transform.tfm", "particles.csv", "report.json", "qc.png",
    "optical_on_mri.nii.gz", "c13_phased.nii.gz",
)

__all__ = ["OUTPUT_FILES", "FolderResult", "PipelineOptions", "input_checksums", "peak_rss_mb",
           "process_folder"]


@dataclass
class PipelineOptions:
    """Choices a user can make per run (CLI flags mirror them)."""

    rf_correction: bool = True
    t1_s: float = float("inf")
    refine: bool = True
    allow_mirror: bool = True
    optical_pixel_size_um: tuple[float, ...] | None = None
    min_snr: float = 5.0
    fused_grid: str | float = "mri"
    match_tolerance_mm: float | None = None  # particle match tolerance; None: 0.6 MRI voxel per axis
    motion_correction: bool = True  # estimate shot displacement, correct it when it helps the lock-in
    false_alarms_per_image: float = 0.1  # expected false 13C particle detections per image (quantification)
    t2star_deconvolution: bool = False  # Wiener-deconvolve T2* along the readout when the manifest gives mri.t2star_ms


@dataclass(repr=False)
class FolderResult:
    """Everything the pipeline computed for one acquisition folder.

    ``c13`` is ``|H|`` and ``background`` ``|B|`` on the MRI grid; ``lockin`` the complex
    :class:`dualmode.recon.signflip.SignFlipResult`; ``shots`` the per-shot images;
    ``registration`` a :class:`dualmode.registration.Registration` or ``None`` with the
    reason in ``registration_error``; ``fused`` the two-channel volume (13C, optics),
    ``optical_on_mri`` the optics on the MRI grid, ``optical_native`` the optics on a grid
    with the MRI axes at its own pixel size; ``report`` the content of ``report.json``.
    """

    acquisition: object
    c13: Volume
    background: Volume
    lockin: object
    shots: np.ndarray
    report: dict
    optics: object = None
    nv_lockin: object = None
    registration: object = None
    registration_error: str | None = None
    registration_best: dict | None = None  # best rejected hypothesis (RegistrationError.best), for qc.png
    fused: Volume | None = None
    optical_on_mri: Volume | None = None
    optical_native: Volume | None = None
    timings: dict = field(default_factory=dict)
    c13_phased: Volume | None = None
    quantification: object = None

    @property
    def name(self) -> str:
        return self.acquisition.name

    @property
    def ok(self) -> bool:
        """True when the folder was registered and fused."""
        return self.registration is not None

    def __repr__(self) -> str:
        reg = (f"{self.registration.matched} matched" if self.registration is not None
               else f"not registered: {self.registration_error}")
        return (f"FolderResult({self.name!r}, c13={self.c13!r}, snr={self.lockin.snr:.1f}, {reg})")


class _Clock:
    """Stage timer: ``clock.lap("register")`` records the time since the previous lap and logs it."""

    def __init__(self, name: str):
        self.name, self.start, self.prev, self.laps = name, time.perf_counter(), time.perf_counter(), {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = now - self.prev
        self.prev = now
        log.info("%s: %s %.2f s", self.name, stage, self.laps[stage])

    def total(self) -> dict:
        return {**self.laps, "total": self.prev - self.start}


def reconstruct_and_lock_in(acq, opts: PipelineOptions):
    """Per-shot reconstruction and the sign-flip lock-in; returns ``(lockin, shots)``."""
    from dualmode.recon.lockin_recon import lockin_reconstruct

    return lockin_reconstruct(acq.kspace, acq.polarization, rf_correction=opts.rf_correction, t1_s=opts.t1_s,
                              hyperpolarized=getattr(acq, "hyperpolarized", True), motion=opts.motion_correction)


def planned_sampling(acq) -> str | None:
    """Path of the sampling plan the manifest names (``mri.sampling``), or ``None``."""
    return getattr(acq, "sampling", None)


def reconstruct_planned_folder(acq, path: str, opts: PipelineOptions):
    """Planned acquisition: lock-in in k-space, support-constrained least squares on the plan's
    optical support, data-consistency tests; returns ``(lockin, shots, report["planned"], shot_lockin)``,
    the last the lock-in of the (aliased) linear shot images, for the background metrics."""
    import dataclasses

    from dualmode.errors import InputError
    from dualmode.plan import plan_coords, plan_support, read_plan
    from dualmode.recon.planned import lockin_kspace, planned_sample_weights, reconstruct_planned

    try:
        plan = read_plan(path)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(path, f"unreadable plan ({err})", "mri.sampling") from None
    ksp, coords = acq.kspace, plan_coords(plan)
    if ksp.coords is None or ksp.coords.shape[0] != len(coords) or not np.allclose(ksp.coords[:, :coords.shape[1]], coords,
                                                                                    atol=1e-3):
        raise InputError(ksp.source, "the k-space samples are not those of the plan", "mri.sampling")
    h = ksp.header
    lk = lockin_kspace(ksp.data, acq.polarization, coords, h.matrix)
    g = (planned_sample_weights(len(coords), h.flip_angle_deg, int(np.prod(h.matrix)), tr_ms=h.tr_ms or 0.0,
                                t1_s=opts.t1_s) if opts.rf_correction and h.flip_angle_deg else None)
    sup = plan["support"]
    pos = np.asarray(sup["particles_voxel"], float).reshape(-1, 3)
    particles = {"pos_vox": pos, "diam_mm": np.full(len(pos), sup["diameter_um"] / 1000.0),
                 "voxel_mm": np.asarray(h.fov_mm, float) / np.asarray(h.matrix)} if len(pos) else None
    res = reconstruct_planned(lk.y_signal, coords, plan_support(plan), lk.sigma, sample_weights=g,
                              fit=~np.asarray(plan["check"], bool), particles=particles, sigma_dof=lk.sigma_dof)
    lock = dataclasses.replace(lk.lockin, signal=res.image.astype(np.complex64), noise_sigma=res.noise_sigma_image,
                               noise_map=None)
    report = {"plan": os.path.relpath(path, acq.folder), "status": "flagged" if res.flagged else "ok", "flagged": res.flagged,
              "reasons": res.reasons, "fallback": res.fallback, "n_fit": plan["n_fit"], "n_check": plan["n_check"],
              "acceleration": plan["acceleration"], "kspace_noise_sigma": lk.sigma, "noise_dof": lk.sigma_dof,
              "support_voxels": int(sup["n_voxels"]), "model": "particles" if particles else "voxels",
              "tests": res.stats,
              "background_note": "background from the planned samples only (aliased): not resolved"}
    return lock, lk.shots, report, lk.lockin


def signflip_report(acq, lock, shots, affine: np.ndarray) -> dict:
    """The ``report.json["signflip"]`` block: noise, SNR, shot weights, background metrics."""
    from dualmode.recon.metrics import signflip_metrics

    return {
        "noise_sigma": lock.noise_sigma,
        "snr": lock.snr,
        "shot_weights": [[float(c.real), float(c.imag)] for c in lock.shot_weights],
        "reconstruction": (lock.info or {}).get("reconstruction"),
        **signflip_metrics(shots, acq.polarization, lock, voxel_size=voxel_sizes(affine)),
    }


def optical_lock_in(acq):
    """The NV-specific image from modulated frames, or the plain image; returns ``(optics, nv, metrics)``."""
    optics = acq.optics
    if optics is None or optics.frames is None or optics.states is None:
        return optics, None, None
    from dualmode.io import OpticalImage
    from dualmode.recon.metrics import optical_metrics
    from dualmode.recon.optical_lockin import optical_lockin

    nv = optical_lockin(optics.frames, optics.states)
    return OpticalImage(nv.nv, optics.spacing_um, optics.source), nv, optical_metrics(optics.frames, nv)


def register_optics(acq, c13: Volume, sigma: float, optics, opts: PipelineOptions):
    """Register the optics to the 13C image: ``(registration, None, None)`` or ``(None, reason, best rejected)``."""
    from dualmode import registration as reg_mod

    if optics is None:
        return None, f"{acq.folder}: manifest has no optics section: nothing to fuse", None
    try:
        reg = reg_mod.register(
            c13.data, c13.affine, sigma, optics,
            center_mm=acq.placement_center_mm, uncertainty_mm=acq.placement_uncertainty_mm,
            orientation=acq.placement_orientation,
            orientation_uncertainty_deg=acq.placement_orientation_uncertainty_deg or 180.0,
            diameter_um=acq.particle_diameter_um, allow_mirror=opts.allow_mirror, refine=opts.refine,
            tol_mm=opts.match_tolerance_mm,
        )
    except reg_mod.RegistrationError as err:
        return None, str(err), getattr(err, "best", None)
    return reg, None, None


def fuse_volumes(c13: Volume, optics, reg, grid) -> tuple[Volume, Volume, Volume]:
    """Fused volume on ``grid``, optics on the MRI grid, optics on its native grid (MRI axes)."""
    from dualmode.registration.fusion import fuse_folder

    (fused, fused_affine), on_mri, (native, native_affine) = fuse_folder(c13.data, c13.affine, optics,
                                                                          reg.optical_to_mri, grid)
    return Volume(fused, fused_affine), Volume(on_mri, c13.affine), Volume(native, native_affine)


def registration_report(reg, c13: Volume) -> dict:
    """The ``report.json["registration"]`` block of a successful registration."""
    vox = float(np.mean(c13.voxel_mm[: 2 if c13.shape[2] == 1 else 3]))
    return {
        "method": reg.method, "matched": reg.matched, "mirrored": reg.mirrored, "scale": reg.scale,
        "warnings": list(reg.warnings),
        "median_residual_mm": float(np.median(reg.residuals_mm)) if len(reg.residuals_mm) else None,
        "tre_loo_mm": reg.tre_loo_mm,
        "tre_loo_voxels": None if reg.tre_loo_mm is None else reg.tre_loo_mm / vox,
        "mri_particles": int(len(reg.mri_particles.xyz)),
        "optical_particles": int(len(reg.optical_particles.xyz)),
    }


#: a registration on at most this many particle pairs is flagged (a similarity fit has 4 parameters in a plane)
FEW_PAIRS = 4


def _flag_registration(reg, report: dict) -> None:
    """Flag a registration the particles cannot vouch for: two hypotheses (e.g. proper and mirrored) fitting
    about equally, image similarity (Mattes MI) choosing; or no more than :data:`FEW_PAIRS` pairs. Deep,
    blurred optics produce both, with wrong transforms the chance model accepts (docs/quantitative.md)."""
    texts = []
    if reg.details.get("mirror_tie_break"):
        fits = " and ".join(f"{c['matched']} pairs ({'mirrored' if c['mirrored'] else 'proper'})"
                            for c in reg.details.get("candidates", [])[:2])
        texts.append(f"registration: two hypotheses fit the particles about equally ({fits}); image similarity "
                     "(Mattes MI) alone chose: check the transform (--no-mirror if the microscope never flips)")
    if reg.matched <= FEW_PAIRS:
        texts.append(f"registration: rests on {reg.matched} particle pairs, too few to cross-check a similarity "
                     "fit (4 parameters in a plane): check the transform")
    for text in texts:
        report.setdefault("flags", []).append(text)
        log.warning("%s: %s", report["name"], text)


def _check_polarization(acq, lock, shots, affine, report: dict) -> None:
    """Flag (``report["flags"]``, log) a polarization list that contradicts the shots (:mod:`.sanity`)."""
    from .sanity import polarization_check

    check = polarization_check(shots, acq.polarization, lock, affine)
    if check is not None:
        report["signflip"]["polarization_check"] = check
        text = f"{os.path.join(acq.folder, 'acquisition.json')} [mri.polarization]: {check['message']}"
        report.setdefault("flags", []).append(text)
        log.warning("%s", text)


def analyse_folder(folder: str | os.PathLike, options: PipelineOptions | None = None) -> FolderResult:
    """Run every step on one acquisition folder and return the :class:`FolderResult` (writes nothing).

    Raises
    ------
    dualmode.errors.InputError
        Bad input (names file and field).
    """
    from dualmode.io import load_acquisition
    from dualmode.registration.resample import folder_threads

    opts = options or PipelineOptions()
    clock = _Clock(os.path.basename(os.path.normpath(folder := os.fspath(folder))))  # the folder's name (acq.name)
    checksums = input_checksums(folder)  # first: refuses FIFOs and devices before a reader blocks on one
    acq = load_acquisition(folder, opts.optical_pixel_size_um, threads=folder_threads())
    clock.lap("read")
    affine = acq.kspace.header.affine()
    sampling = planned_sampling(acq)
    if sampling is None:
        lock, shots = reconstruct_and_lock_in(acq, opts)
    else:
        lock, shots, planned, shot_lock = reconstruct_planned_folder(acq, sampling, opts)
    lock, off_resonance = off_resonance_step(acq, lock)
    lock, t2star = t2star_step(acq, lock, opts)
    clock.lap("reconstruct")
    c13 = Volume(np.abs(lock.signal).astype(np.float32), affine)
    report = {
        "folder": folder,
        "name": acq.name,
        "mri": {**acq.kspace.header.describe(), "undersampling": acq.kspace.undersampling},
        "polarization": acq.polarization.tolist(),
        "signflip": signflip_report(acq, lock if sampling is None else shot_lock, shots, affine),
        "motion": lock.info.get("motion"),
        "off_resonance": off_resonance,
        "t2star": t2star,
        "options": asdict(opts),
        "versions": versions(),
        "input_sha256": checksums,
    }
    if sampling is not None:  # metrics of the shot images; noise and SNR of the reconstruction
        report["signflip"].update(noise_sigma=lock.noise_sigma, snr=lock.snr)
        report["planned"] = planned
        report.setdefault("flags", []).extend(f"planned acquisition: {r}" for r in planned["reasons"])
    _check_polarization(acq, lock, shots, affine, report)
    if t2star.get("flag"):
        report.setdefault("flags", []).append(t2star["flag"])
    clock.lap("signflip")
    result = FolderResult(acquisition=acq, c13=c13, background=Volume(np.abs(lock.background), affine),
                          lockin=lock, shots=shots, report=report)
    result.c13_phased, result.quantification, report["quantification"] = quantify_step(acq, lock, affine, opts)
    clock.lap("quantify")
    result.optics, result.nv_lockin, optical = optical_lock_in(acq)
    if optical is not None:
        report["optical_lockin"] = optical
    result.registration, result.registration_error, result.registration_best = register_optics(
        acq, c13, lock.noise_sigma, result.optics, opts)
    clock.lap("register")
    if result.optics is None:  # valid 13C result, nothing to fuse: ok with a note, not failed
        report["registration"] = {"skipped": "no optics section in acquisition.json", "matched": None}
        report["notes"] = report.get("notes", []) + ["no optics: 13C outputs only, nothing registered or fused"]
    elif result.registration is None:
        report["registration"] = {"error": result.registration_error}
    else:
        result.fused, result.optical_on_mri, result.optical_native = fuse_volumes(
            c13, result.optics, result.registration, opts.fused_grid)
        report["registration"] = registration_report(result.registration, c13)
        _flag_registration(result.registration, report)
        clock.lap("fuse")
    result.timings = clock.total()
    return result


def process_folder(folder: str | os.PathLike, out_root: str | os.PathLike | None = None,
                   options: PipelineOptions | None = None) -> FolderResult:
    """Process one acquisition folder; with ``out_root``, write every output under ``out_root/<name>/``.

    Parameters
    ----------
    folder : path-like
        Acquisition folder (``acquisition.json`` + raw data, see ``docs/acquisition-format.md``).
    out_root : path-like, optional
        Output root; ``None`` computes the result without writing anything.
    options : PipelineOptions, optional

    Returns
    -------
    FolderResult
        Its ``report`` is the content of ``report.json``.

    Raises
    ------
    dualmode.errors.InputError
        Bad input (names file and field). Nothing is written for that folder.
    dualmode.registration.RegistrationError
        With ``out_root`` only: the optics could not be registered; the 13C outputs and
        ``report.json`` (with the reason) are written first. A folder without optics is not
        an error: its 13C outputs are written and ``report.json["notes"]`` says so.

    Examples
    --------
    >>> result = process_folder("my-acq", "out")   # doctest: +SKIP
    >>> result.report["registration"]["matched"]    # doctest: +SKIP
    10
    """
    result = analyse_folder(folder, options)
    if out_root is None:
        return result
    from dualmode.registration import RegistrationError

    from .outputs import write_outputs

    write_outputs(result, os.path.join(os.fspath(out_root), result.name))
    if result.registration is None and result.optics is not None:
        raise RegistrationError(result.registration_error)
    if result.registration is None:
        log.info("%s: SNR %.1f; no optics, 13C outputs only", result.name, result.lockin.snr)
        return result
    log.info("%s: SNR %.1f, %d particles matched", result.name, result.lockin.snr, result.registration.matched)
    return result
