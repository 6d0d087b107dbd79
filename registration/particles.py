"""Particle (blob) detection in the 13C MRI magnitude and in fluorescence images.

MRI: the ~200 um diamond particles are about one voxel, so each appears as the
imaging PSF. Local maxima of the lightly smoothed ``|H|`` are kept when their
amplitude above the Rician noise floor (mean ``sigma sqrt(pi/2)``) exceeds
``min_snr * sigma``; the sub-voxel centre is the vertex of a 3-point Gaussian
(log-parabola) fit along each axis.

Optics: white top-hat background removal (structuring element larger than a
particle), multi-scale scale-normalised Laplacian of Gaussian with
``sigma0 = d / (2 sqrt(2) pixel)`` (the LoG of a disc of diameter ``d`` peaks at
this scale; Lindeberg, IJCV 30:79 (1998)) and larger scales for particles blurred
by scattering at depth. Centres are intensity-weighted centroids; the confidence
falls with blur (selected scale / sigma0) and low SNR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

from dualmode.conventions import apply_affine

from .mri_view import CLUSTER_ELONGATION, CLUSTER_WEIGHT, as_mri_sees, merge_clusters

#: Mean of the Rician noise floor in units of the per-component sigma.
RICIAN_FLOOR = float(np.sqrt(np.pi / 2))


@dataclass
class Particles:
    """Detected particles: positions (mm for MRI world RAS, um for optics), amplitude,
    SNR (amplitude / noise sigma) and confidence in [0, 1]."""

    xyz: np.ndarray
    amplitude: np.ndarray
    snr: np.ndarray
    confidence: np.ndarray
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, index) -> "Particles":
        index = np.asarray(index)
        return Particles(self.xyz[index], self.amplitude[index], self.snr[index],
                         self.confidence[index], {k: np.asarray(v)[index] for k, v in self.extra.items()})


def _confidence(snr, min_snr):
    return snr**2 / (snr**2 + (2.0 * min_snr) ** 2)


def _gauss_vertex(m1, c0, p1):
    """Offset of the vertex of a parabola through log values at -1, 0, +1 (Gaussian fit)."""
    eps = 1e-12
    if m1 > eps and p1 > eps and c0 > eps:
        lm, lc, lp = np.log(m1), np.log(c0), np.log(p1)
    else:
        lm, lc, lp = m1, c0, p1
    den = lm - 2 * lc + lp
    if den >= 0:
        return 0.0, c0
    off = 0.5 * (lm - lp) / den
    off = float(np.clip(off, -0.5, 0.5))
    peak = lc - 0.25 * (lm - lp) * off
    return off, float(np.exp(peak) if (m1 > eps and p1 > eps and c0 > eps) else peak)


def detect_mri_particles(
    image: np.ndarray,
    affine: np.ndarray,
    noise_sigma: float,
    *,
    min_snr: float = 5.0,
    smooth_voxels: float = 0.5,
) -> Particles:
    """Detect particles in a background-free 13C magnitude image ``|H|``.

    Parameters
    ----------
    image : (I, J, K) ndarray
        ``|H|``; 2D data have ``K = 1``.
    affine : (4, 4) ndarray
        Voxel -> RAS mm.
    noise_sigma : float
        Per-component sigma of the complex ``H``.
    min_snr : float
        Keep maxima whose amplitude above the Rician floor is ``>= min_snr * sigma``.
    smooth_voxels : float
        Gaussian sigma (voxels) applied before looking for maxima (suppresses noise maxima).

    Returns
    -------
    Particles
        ``xyz`` in RAS mm, ``amplitude`` above the floor, ``snr = amplitude / sigma``;
        ``extra["ijk"]`` the sub-voxel indices.
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 3:
        raise ValueError(f"MRI image must be [i, j, k] (3D, k = 1 for 2D), got shape {img.shape}")
    sigma = float(noise_sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"noise_sigma must be a positive number, got {noise_sigma!r}")
    active = [n > 1 for n in img.shape]
    smooth = ndi.gaussian_filter(img, [smooth_voxels if a else 0 for a in active], mode="nearest")
    floor = RICIAN_FLOOR * sigma
    thr = floor + 0.5 * min_snr * sigma  # loose pre-threshold on the smoothed image
    peaks = peak_local_max(smooth, min_distance=1, threshold_abs=thr, exclude_border=False)
    ijk, amp = [], []
    for p in peaks:
        # climb to the raw maximum in the 3x3x3 neighbourhood
        lo = np.maximum(p - 1, 0)
        hi = np.minimum(p + 2, img.shape)
        block = img[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        q = lo + np.array(np.unravel_index(np.argmax(block), block.shape))
        centre = q.astype(float)
        peak_vals = []
        for ax in range(3):
            if not active[ax] or q[ax] == 0 or q[ax] == img.shape[ax] - 1:
                peak_vals.append(img[tuple(q)])
                continue
            qm, qp = q.copy(), q.copy()
            qm[ax] -= 1
            qp[ax] += 1
            off, pk = _gauss_vertex(img[tuple(qm)], img[tuple(q)], img[tuple(qp)])
            centre[ax] += off
            peak_vals.append(pk)
        ijk.append(centre)
        amp.append(max(peak_vals) - floor)
    ijk = np.array(ijk, float).reshape(-1, 3)
    amp = np.array(amp, float)
    snr = amp / sigma
    keep = snr >= min_snr
    ijk, amp, snr = ijk[keep], amp[keep], snr[keep]
    # merge duplicates (two smoothed maxima climbing to the same raw peak)
    if len(ijk) > 1:
        order = np.argsort(-amp)
        chosen = []
        for n in order:
            if all(np.linalg.norm(ijk[n] - ijk[c]) > 0.75 for c in chosen):
                chosen.append(n)
        chosen = np.array(chosen)
        ijk, amp, snr = ijk[chosen], amp[chosen], snr[chosen]
    return Particles(apply_affine(affine, ijk), amp, snr, _confidence(snr, min_snr), {"ijk": ijk})


def _white_tophat(img, size_px):
    size = [max(3, int(np.ceil(s)) | 1) if n > 1 else 1 for s, n in zip(size_px, img.shape)]
    return img - ndi.grey_opening(img, size=size)


def _log_max(img, sigma0, factors):
    """Maximum over the scales of the scale-normalised negative LoG ``-sum_d s_d^2 d^2/dx_d^2 (G_s * img)``
    at ``s = f sigma0`` for each factor ``f`` (cascaded Gaussian smoothing, central second differences;
    axes with ``sigma0_d = 0`` are left out), and the index of the first scale that reaches it:
    ``stack.max(0), stack.argmax(0)`` of the stacked responses, accumulated scale by scale."""
    response, best = None, np.zeros(img.shape, np.intp)
    for i, resp in enumerate(_log_responses(img, sigma0, factors)):
        if response is None:
            response = resp
            continue
        higher = resp > response  # strictly: argmax keeps the first of equal values
        best[higher] = i
        np.maximum(response, resp, out=response)
    return response, best


def _log_responses(img, sigma0, factors):
    """The scale-normalised negative LoG of :func:`_log_max` at each scale, one after the other."""
    smooth = img
    prev = np.zeros_like(sigma0)
    for f in factors:
        s = f * sigma0
        smooth = ndi.gaussian_filter(smooth, np.sqrt(np.maximum(s**2 - prev**2, 0)), mode="nearest")
        prev = s
        yield ndi.correlate(smooth, _negative_laplacian_stencil(s), mode="nearest")


def _negative_laplacian_stencil(scale) -> np.ndarray:
    """3x3x3 weights of ``-sum_d s_d^2 (x[i-1] - 2 x[i] + x[i+1])_d`` (central second differences).

    One :func:`scipy.ndimage.correlate` pass (its 7 non-zero taps, summed in double precision)
    instead of a second-difference pass per axis and the sum in float32: the same response to
    float32 rounding, 40 % less time.
    """
    w = np.zeros((3, 3, 3))
    for ax, sd in enumerate(scale):
        if sd > 0:
            for end in (0, 2):
                w[tuple(end if d == ax else 1 for d in range(3))] -= sd**2
            w[1, 1, 1] += 2 * sd**2
    return w


def _binned(img, spacing, diameter_um):
    """Block-mean binned image with ~2 px per ``sigma0`` (the LoG scale of a particle)."""
    from skimage.transform import downscale_local_mean

    active = np.array([n > 1 for n in img.shape])
    sigma_full = np.where(active, np.maximum(diameter_um / (2 * np.sqrt(2)) / spacing, 0.7), 0.0)
    step = np.where(active, np.maximum(1, np.floor(sigma_full / 2.0)), 1).astype(int)
    crop = tuple(slice(0, (n // k) * k) for n, k in zip(img.shape, step))
    small = downscale_local_mean(img[crop], tuple(step)).astype(np.float32) if np.any(step > 1) else img
    return small, step, sigma_full, active


def _candidates(small, step, sigma_full, active, spacing, diameter_um, max_blur):
    """Local maxima of the multi-scale LoG of the background-removed binned image:
    ``(peaks, blur factor per peak, amplitude map)``."""
    sigma0 = sigma_full / step
    # background: white top-hat with an element 2.5 particle diameters wide
    flat = _white_tophat(ndi.gaussian_filter(small, 0.25 * sigma0), 2.5 * diameter_um / (spacing * step))
    scales = np.geomspace(1.0, max_blur, 5)
    response, best_scale = _log_max(flat, sigma0, scales)
    mind = max(1, int(np.floor(np.sqrt(2) * sigma0[active].min())))
    peaks = _local_maxima(response, mind)
    blur = scales[best_scale[tuple(peaks.T)]] if len(peaks) else np.zeros(0)
    return peaks, blur, ndi.gaussian_filter(flat, 0.5 * sigma0)


def _local_maxima(response, min_distance: int) -> np.ndarray:
    """``peak_local_max(response, min_distance=min_distance, threshold_abs=0, exclude_border=False)``.

    Two maxima of the ``2 min_distance + 1`` cube maximum filter closer than ``min_distance``
    (Chebyshev) hold equal values (each is the maximum of a cube holding the other), so the
    spacing pass of :func:`skimage.feature.peak_local_max`, a Python loop over all candidates
    (0.1-0.2 s for the ~1300 of a 3D stack), removes nothing unless there are such ties: it
    runs only then.
    """
    from scipy.spatial import cKDTree

    peak = response == ndi.maximum_filter(response, size=2 * min_distance + 1, mode="nearest")
    if peak.all():  # a flat image has no peak (as peak_local_max)
        return np.zeros((0, response.ndim), int)
    peak &= response > 0
    coord = np.transpose(np.nonzero(peak))
    coord = coord[np.argsort(-response[peak], kind="stable")]
    if min_distance > 1 and len(coord) > 1 and len(cKDTree(coord).query_pairs(min_distance, p=np.inf)):
        return peak_local_max(response, min_distance=min_distance, threshold_abs=0.0, exclude_border=False)
    return coord


def _measure(img, peaks, blur, amp_map, step, sigma_full, active, threshold):
    """Full-resolution centroid (px), amplitude, blur and edge flag of each peak above ``threshold``."""
    out = []
    for p, b in zip(peaks, blur):
        a = amp_map[tuple(p)]
        if a < threshold:
            continue
        radius = 1.5 * np.sqrt(2) * b * sigma_full
        centre = _centroid(img, (p + 0.5) * step - 0.5, radius, sigma_full, active)
        # a blob cut by the field edge has a biased centroid: flag it
        cut = np.any(active[:2] & ((centre[:2] - 0.5 * radius[:2] < 0) |
                                   (centre[:2] + 0.5 * radius[:2] > np.array(img.shape[:2]) - 1)))
        out.append((centre, a, b, cut))
    return out


def detect_optical_particles(
    image: np.ndarray,
    spacing_um,
    *,
    diameter_um: float = 200.0,
    min_snr: float = 5.0,
    max_blur: float = 3.0,
    mri_voxel_mm=None,
) -> Particles:
    """Detect fluorescent particles of known size in ``data[x, y, z]``.

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        Fluorescence (widefield: ``Z = 1``; or a z-stack).
    spacing_um : sequence of 3 float
        Pixel size in um.
    diameter_um : float
        Nominal particle diameter.
    min_snr : float
        Keep blobs whose background-removed peak is ``>= min_snr`` times the noise sigma
        (robust wavelet estimate, :func:`dualmode.registration.noise.wavelet_noise_sigma`).
    max_blur : float
        Largest blur factor (LoG scale / ``sigma0``) searched for deep, scattered particles.
    mri_voxel_mm : sequence of float, optional
        MRI voxel size: detections closer than 1.25 median voxels (touching particles the MRI
        cannot separate) are merged into one lower-weight particle (:func:`merge_clusters`).

    Returns
    -------
    Particles
        ``xyz`` in optical um (origin at the first pixel centre); ``confidence``
        ``= snr^2 / (snr^2 + (2 min_snr)^2) / blur^2``, times 0.1 for blobs cut by the
        field edge (biased centroid); ``extra["blur"]``, ``extra["edge"]``, ``extra["members"]``.

    Examples
    --------
    >>> from dualmode.simulate import make_pair
    >>> pair = make_pair(0, n_particles=40)
    >>> found = detect_optical_particles(pair.optical_data, pair.spacing_um, diameter_um=200.0)
    >>> len(found) > 0
    True
    """
    from .noise import wavelet_noise_sigma

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"optical image must be [x, y, z], got shape {img.shape}")
    spacing = np.asarray(spacing_um, float)
    small, step, sigma_full, active = _binned(img, spacing, diameter_um)
    sq = np.squeeze(img)
    noise = max(wavelet_noise_sigma(sq) if sq.ndim >= 2 else float(np.std(sq)), 1e-12)
    peaks, blur, amp_map = _candidates(small, step, sigma_full, active, spacing, diameter_um, max_blur)
    found = _measure(img, peaks, blur, amp_map, step, sigma_full, active, min_snr * noise)
    xyz = np.array([f[0] for f in found], float).reshape(-1, 3) * spacing
    amp, blur, edge = (np.array([f[k] for f in found], t) for k, t in ((1, float), (2, float), (3, bool)))
    conf = _confidence(amp / noise, min_snr) / blur**2 * np.where(edge, 0.1, 1.0)
    members = np.ones(len(xyz), int)
    elongation = np.ones(len(xyz))
    if mri_voxel_mm is not None and len(xyz):
        xyz, elongation = as_mri_sees(img, xyz, spacing, diameter_um, mri_voxel_mm, active)
        conf = np.where(elongation > CLUSTER_ELONGATION, CLUSTER_WEIGHT * conf, conf)
    if mri_voxel_mm is not None and len(xyz) > 1:
        merge_um = 1.25e3 * float(np.median(np.asarray(mri_voxel_mm, float)))
        xyz, amp, conf, label = merge_clusters(xyz, amp, conf, merge_um)
        members = np.bincount(label, minlength=len(xyz))
        blur_g, edge_g, elong_g = np.zeros(len(xyz)), np.zeros(len(xyz), bool), np.zeros(len(xyz))
        np.maximum.at(blur_g, label, blur)
        np.logical_or.at(edge_g, label, edge)
        np.maximum.at(elong_g, label, elongation)
        blur, edge, elongation = blur_g, edge_g, elong_g
    snr = amp / noise
    return Particles(xyz, amp, snr, conf, {"blur": blur, "edge": edge, "members": members,
                                           "elongation": elongation, "noise": np.full(len(xyz), noise)})


def _centroid(img, centre, radius, sigma0, active, iterations=4):
    """Intensity-weighted centroid inside an ellipsoid of ``radius`` (px), above the median of
    the surrounding box corners (local background), on the lightly smoothed image; re-centred."""
    centre = np.asarray(centre, float)
    box = None
    for _ in range(iterations):
        lo = np.maximum(np.floor(centre - radius), 0).astype(int)
        hi = np.minimum(np.ceil(centre + radius) + 1, img.shape).astype(int)
        new_box = tuple(slice(l, h) for l, h in zip(lo, hi))
        if new_box != box:  # the same box as the last iteration: the same smoothed patch
            box = new_box
            patch = ndi.gaussian_filter(img[box].astype(float), 0.25 * sigma0, mode="nearest")
            g = np.ogrid[box]
        r2 = sum(((g[d] - centre[d]) / max(radius[d], 1e-9)) ** 2 for d in range(3) if active[d])
        inside = np.broadcast_to(r2 <= 1.0, patch.shape)
        base = np.median(patch[~inside]) if (~inside).sum() > 4 else 0.0
        wgt = np.clip(patch - base, 0, None) * inside
        total = wgt.sum()
        if total <= 0:
            break
        new = np.array([(wgt * g[d]).sum() / total for d in range(3)])
        shift = new - centre
        centre = new
        if np.abs(shift).max() < 0.01:
            break
    return centre
