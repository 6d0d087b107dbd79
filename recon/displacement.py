"""Shot-to-shot displacement: detect and correct rigid translations before the lock-in.

A sample that moves between shots breaks the sign-flip cancellation: the
background no longer subtracts and leaves edge ghosts of ``B`` in ``H``. Shifts are
measured by cross-correlation with sub-voxel upsampling (Guizar-Sicairos,
Thurman & Fienup, Opt. Lett. 33, 156 (2008), the estimator of :func:`skimage.registration.
phase_cross_correlation`, here with the reference spectrum kept and a two-step peak
refinement, :func:`estimate_shot_shifts`) of *magnitude* images: ``|s c H + B|`` does not depend
on the sign ``s`` wherever ``H`` and ``B`` do not overlap, so every shot can be
registered to one reference. Magnitudes are taken on a 2x finer grid
(:func:`oversampled_magnitude`), which removes the aliasing bias of ``|.|``.
Measured precision (3D, 1 voxel random shifts, noise sigma 5 % of the particle
peak): 0.02 voxel with a textured background 10x the particles, 0.06 with no
background; up to 0.2 voxel where ``H`` and ``B`` overlap with comparable
amplitude (``|B + H| != |B - H|`` there). Registering each complex shot to a
model prediction from the other shots was tried and was not more precise (the
template inherits the others' misalignment and noise).

Shifts are corrected by a Fourier shift, exact for images reconstructed by a DFT
(periodic field of view): multiplying the centred
k-space by ``exp(-2 pi i k.delta / N)`` (conventions of
:mod:`dualmode.conventions`) translates the image by ``delta`` voxels, which is
also how non-Cartesian k-space is corrected (:func:`kspace_shift_phase`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

from .blas import single_thread_blas


def oversampled_magnitude(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """``|image|`` on a grid ``factor`` times finer (k-space zero padding, axes of length > 1).

    The magnitude of a band-limited complex image is not band-limited: sampled on the
    original grid it aliases and biases sub-voxel correlation; on a 2x grid
    ``|image|^2`` is exactly band-limited and ``|image|`` nearly so. The centred spectrum
    is zero-padded at the end rather than on both sides: that multiplies the interpolated
    image by a linear phase, which the magnitude does not see.

    The padded inverse FFT runs axis by axis, each axis padded just before its own pass, so
    the lines that are still all zeros are never transformed (40 % less work in 3D): the
    same 1D transforms as one ``ifftn(k, s=...)``, bit-identical when every padded length is a
    power of two (the per-axis ``1 / n`` factors are then exact), else equal to rounding.
    """
    if factor == 1:
        return np.abs(image)
    axes = [d for d, n in enumerate(image.shape) if n > 1]
    fine = scipy.fft.fftshift(scipy.fft.fftn(image, axes=axes), axes=axes)
    for d in axes:
        fine = scipy.fft.ifft(fine, n=factor * image.shape[d], axis=d)
    magnitude = np.abs(fine)
    magnitude *= np.float32(factor ** len(axes))
    return magnitude


def _magnitudes(images: np.ndarray, polarization, mode: str, background) -> np.ndarray:
    if mode in ("magnitude", "same_sign"):
        return images
    if mode == "signal":
        s = np.asarray(polarization, dtype=float)
        if background is None:  # sign-balanced mean: the B estimate of the naive lock-in
            background = 0.5 * (images[s > 0].mean(axis=0) + images[s < 0].mean(axis=0))
        return images - background[None]
    raise ValueError(f"mode must be 'magnitude', 'signal' or 'same_sign', got {mode!r}")


def _refinement_grids(upsample_factor: int) -> list[tuple[int, float]]:
    """``(factor, half-width in voxels)`` of the successive peak searches on grids ``1 / factor``:
    a coarse grid near ``sqrt(u)`` first (+-1 voxel around the integer peak), then ``1 / u``
    within one coarse step."""
    coarse = [f for f in range(2, int(np.sqrt(upsample_factor)) + 1) if upsample_factor % f == 0]
    if coarse and upsample_factor > 4:
        return [(coarse[-1], 1.0), (upsample_factor, 1.0 / coarse[-1])]
    return [(upsample_factor, 1.0)]


def _correlation_at(product: np.ndarray, shape, points: list[np.ndarray]) -> np.ndarray:
    """Real cross-correlation ``ifftn(product)`` at the off-grid positions ``points[d]`` of every axis.

    ``product`` is the half spectrum of :func:`scipy.fft.rfftn` (last axis ``n // 2 + 1``):
    the correlation of real images is ``Re sum_k w_k P_k exp(2 pi i k.x / n)`` with
    ``w = 2`` on the half-axis frequencies that stand for a conjugate pair (matrix-multiply
    DFT of Guizar-Sicairos et al. 2008, on the half spectrum).
    """
    data = product
    for d in range(len(shape) - 1, -1, -1):  # contract the last axis first (the smallest data)
        n = shape[d]
        last = d == len(shape) - 1
        freq = scipy.fft.rfftfreq(n) if last else scipy.fft.fftfreq(n)
        kernel = np.exp(2j * np.pi * points[d][:, None] * freq[None, :])
        if last:
            weight = np.full(freq.size, 2.0)
            weight[0] = 1.0
            if n % 2 == 0:
                weight[-1] = 1.0
            kernel = kernel * weight
        data = np.tensordot(kernel.astype(product.dtype), data, axes=(1, -1))
    return data.real / np.prod(shape)


def _peak_shift(ref_spectrum: np.ndarray, spectrum: np.ndarray, shape, upsample_factor: int,
                normalization: str | None) -> np.ndarray:
    """Shift (fine-grid voxels) that registers the image of ``spectrum`` to that of ``ref_spectrum``.

    Integer peak of the correlation by an inverse FFT, then refined on the grids of
    :func:`_refinement_grids` (each search spans one step of the previous grid, the first
    +-1 voxel), so the result lies on the ``1 / upsample_factor`` grid like
    :func:`skimage.registration.phase_cross_correlation`, whose single ``1.5 u``-wide
    matrix-multiply DFT costs ~10x more in 3D.
    """
    product = ref_spectrum * spectrum.conj()
    if normalization == "phase":
        product /= np.maximum(np.abs(product), 100 * np.finfo(product.real.dtype).eps)
    elif normalization is not None:
        raise ValueError("normalization must be None or 'phase'")
    corr = scipy.fft.irfftn(product, s=shape)
    peak = np.array(np.unravel_index(np.argmax(np.abs(corr)), shape), dtype=float)
    shape_arr = np.asarray(shape, dtype=float)
    shift = np.where(peak > np.trunc(shape_arr / 2), peak - shape_arr, peak)
    if upsample_factor > 1:
        for factor, span in _refinement_grids(upsample_factor):
            half = int(round(span * factor))
            points = [shift[d] + np.arange(-half, half + 1) / factor for d in range(len(shape))]
            local = np.abs(_correlation_at(product, shape, points))
            best = np.unravel_index(np.argmax(local), local.shape)
            shift = np.array([points[d][best[d]] for d in range(len(shape))])
    return shift


def _shot_registration(source: np.ndarray, oversample: int, upsample_factor: int, normalization):
    """``register(ref, k)``: shift (voxels) registering shot ``k`` of ``source`` to shot ``ref``.

    Works on the axes longer than one voxel (the shift along the others is 0) and keeps the
    spectrum of every reference it computed.
    """
    n_shots, shape = source.shape[0], source.shape[1:]
    axes = [d for d, size in enumerate(shape) if size > 1]
    source = source.reshape(n_shots, *[shape[d] for d in axes])
    fine_shape = tuple(oversample * size for size in source.shape[1:])
    spectra: dict[int, np.ndarray] = {}

    def spectrum(k: int, keep: bool = False) -> np.ndarray:
        if k in spectra:
            return spectra[k]
        spec = scipy.fft.rfftn(oversampled_magnitude(source[k], oversample))
        if keep:
            spectra[k] = spec
        return spec

    def register(ref: int, k: int) -> np.ndarray:
        shift = np.zeros(len(shape))
        if ref != k and axes:
            shift[axes] = _peak_shift(spectrum(ref, keep=True), spectrum(k), fine_shape, upsample_factor,
                                      normalization) / oversample
        return shift

    return register


@single_thread_blas  # the refinement's small matrix products: threaded BLAS collapsed under load
def estimate_shot_shifts(
    images: np.ndarray,
    polarization=None,
    *,
    reference: int = 0,
    mode: str = "magnitude",
    background: np.ndarray | None = None,
    upsample_factor: int = 50,
    oversample: int = 2,
    normalization: str | None = None,
) -> np.ndarray:
    """Translation of every shot relative to a reference shot, in voxels.

    Parameters
    ----------
    images : ndarray, shape (n_shots, ...)
        Complex (or real) per-shot images.
    polarization : sequence of +1/-1, optional
        Needed for ``mode="signal"`` and ``"same_sign"``.
    reference : int
        Index of the reference shot (its shift is 0).
    mode : {"magnitude", "signal", "same_sign"}
        ``"magnitude"``: register ``|S_k|`` (whole-sample motion; sign-invariant
        where ``H`` and ``B`` do not overlap). ``"signal"``: register ``|S_k - B_est|``
        (particles moving in a static background; ``B_est`` the sign-balanced mean
        unless ``background`` is given). ``"same_sign"``: register each shot to the
        reference of its own sign, then the minus reference to the plus reference.
    upsample_factor : int
        Sub-voxel precision ``1 / upsample_factor`` (of the oversampled grid).
    oversample : int
        Magnitudes computed on a grid this many times finer
        (:func:`oversampled_magnitude`; 2 removes the aliasing bias, 1 saves memory).
    normalization : None or "phase"
        ``None``: plain cross-correlation (more robust to noise); ``"phase"``: phase
        correlation, as in :func:`skimage.registration.phase_cross_correlation`.

    Returns
    -------
    shifts : (n_shots, ndim) ndarray
        Shift to apply to each shot (:func:`correct_shot_shifts`) to register it
        to the reference; minus the displacement of the shot.

    Notes
    -----
    The correlation peak is that of :func:`skimage.registration.phase_cross_correlation`
    (same estimator, same ``1 / upsample_factor`` grid; with ``normalization=None`` it
    agrees within one grid step), computed on real FFTs of the magnitudes with the
    reference's spectrum kept, and refined in two small matrix-multiply DFTs instead of one
    (:func:`_peak_shift`): 3-4x less time for four 64x64x32 shots. The phase correlation
    interpolates the Nyquist terms as a real function (skimage: complex), which moves its
    noisier peak by up to ~0.02 voxel.
    """
    images = np.asarray(images)
    n = images.shape[0]
    if not 0 <= reference < n:
        raise ValueError(f"reference shot {reference} out of range 0..{n - 1}")
    if mode != "magnitude" and polarization is None:
        raise ValueError(f"mode {mode!r} needs the polarization signs")
    if int(upsample_factor) < 1:
        raise ValueError(f"upsample_factor must be >= 1, got {upsample_factor}")
    register = _shot_registration(_magnitudes(images, polarization, mode, background), oversample,
                                  int(upsample_factor), normalization)
    if mode != "same_sign":
        return np.stack([register(reference, k) for k in range(n)])
    s = np.asarray(polarization, dtype=float)
    ref_sign = s[reference]
    other = int(np.flatnonzero(s != ref_sign)[0])
    offset = register(reference, other)
    return np.stack([register(reference, k) if s[k] == ref_sign else offset + register(other, k)
                     for k in range(n)])


def correct_shot_shifts(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each shot by ``shifts[k]`` voxels (Fourier shift, periodic, keeps phase).

    Parameters
    ----------
    images : ndarray, shape (n_shots, ...)
    shifts : (n_shots, ndim) array, from :func:`estimate_shot_shifts`

    Returns
    -------
    ndarray, complex for complex input, else the input dtype kind (real part kept).
    """
    images = np.asarray(images)
    shifts = np.asarray(shifts, dtype=float)
    if shifts.shape != (images.shape[0], images.ndim - 1):
        raise ValueError(f"shifts must have shape {(images.shape[0], images.ndim - 1)}, got {shifts.shape}")
    out = np.empty(images.shape, dtype=np.result_type(images.dtype, np.complex64))
    for k, (img, shift) in enumerate(zip(images, shifts)):
        if not np.any(shift):
            out[k] = img
            continue
        spectrum = scipy.fft.fftn(img)
        out[k] = scipy.fft.ifftn(scipy.ndimage.fourier_shift(spectrum, shift))
    return out if np.iscomplexobj(images) else out.real.astype(images.dtype)


def kspace_shift_phase(coords: np.ndarray, shift, matrix) -> np.ndarray:
    """Phase factor translating the image by ``shift`` voxels, for k-space ``coords``.

    ``coords[..., d]`` in cycles per field of view (Cartesian: the centred index
    ``k = i - N//2``), ``matrix`` the image size. Multiply the k-space samples by the
    result: ``exp(-2 pi i sum_d k_d shift_d / N_d)``.
    """
    coords = np.asarray(coords, dtype=float)
    shift = np.asarray(shift, dtype=float)
    matrix = np.asarray(matrix, dtype=float)
    return np.exp(-2j * np.pi * np.sum(coords * (shift / matrix), axis=-1))


def shift_report(shifts: np.ndarray, voxel_size=None, threshold_voxels: float = 0.1) -> dict:
    """JSON-friendly summary of per-shot shifts (voxels, and mm when ``voxel_size`` is given)."""
    shifts = np.asarray(shifts, dtype=float)
    norm = np.linalg.norm(shifts, axis=1)
    report = {
        "shifts_voxels": np.round(shifts, 4).tolist(),
        "max_shift_voxels": float(norm.max()) if norm.size else 0.0,
        "n_shots_moved": int(np.sum(norm > threshold_voxels)),
    }
    if voxel_size is not None:
        vs = np.asarray(voxel_size, dtype=float)[: shifts.shape[1]]
        report["max_shift_mm"] = float(np.linalg.norm(shifts * vs, axis=1).max()) if norm.size else 0.0
    return report


@dataclass
class MotionCorrection:
    """Result of :func:`correct_motion`: the (corrected) ``images``, the estimated ``shifts``
    (voxels, to apply to each shot), whether they were ``corrected`` and a JSON ``report``."""

    images: np.ndarray
    shifts: np.ndarray
    corrected: bool
    report: dict


def correct_motion(images: np.ndarray, polarization=None, *, threshold_voxels: float = 0.05,
                   voxel_size=None, **estimate_kwargs) -> MotionCorrection:
    """Estimate shot-to-shot translations and correct them when significant (a pipeline step).

    Parameters
    ----------
    images : ndarray, shape (n_shots, ...)
        Per-shot images (complex).
    polarization : sequence of +1/-1, optional
        Passed to :func:`estimate_shot_shifts`.
    threshold_voxels : float
        Correct only when some shot moved more than this; 0 always corrects. The default
        lies above the shifts estimated on still 2D folders without background (0.02-0.04
        voxel: noise) and below the 0.05-0.1 voxel (10 µm) shifts whose uncorrected leak
        doubles the residual background at a background 10x the particles.
    voxel_size : sequence of float, optional
        For the report in mm.
    **estimate_kwargs
        Passed to :func:`estimate_shot_shifts` (``mode``, ``reference``, ...).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=(32, 32)) + 0j
    >>> moved = correct_shot_shifts(np.stack([img, img]), np.array([[0, 0], [1.5, 0]]))
    >>> out = correct_motion(moved)
    >>> out.corrected, np.round(out.shifts[1], 2).tolist()
    (True, [-1.5, 0.0])
    """
    images = np.asarray(images)
    shifts = estimate_shot_shifts(images, polarization, **estimate_kwargs)
    report = shift_report(shifts, voxel_size, threshold_voxels=max(threshold_voxels, 1e-9))
    moved = report["max_shift_voxels"] > threshold_voxels
    report.update({"corrected": bool(moved), "threshold_voxels": threshold_voxels})
    return MotionCorrection(correct_shot_shifts(images, shifts) if moved else images, shifts, bool(moved), report)
