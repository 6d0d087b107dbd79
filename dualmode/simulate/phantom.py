"""Synthetic MRI/optical particle pairs with a known ``optical_to_mri`` (tests, benchmarks).

MRI: each spherical particle (diameter ``d``) is rendered in k-space with its
exact form factor ``3 (sin u - u cos u) / u^3``, ``u = pi d |k|`` (k in cycles/mm),
times the shift phase ``exp(-2 pi i k.x)`` on the acquired (truncated) Cartesian
grid, so the image carries the true sinc-like PSF; complex Gaussian noise of
sigma ``noise_sigma`` is added and the magnitude taken (Rician floor).

Optics: discs/spheres (supersampled) blurred by a Gaussian that grows with depth
or defocus (scattering), on a smooth autofluorescence background, with Poisson
and read noise. The optical frame is related to MRI world by a rotation about z,
optional mirror (y flip), small tilt and translation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from dualmode.conventions import apply_affine, mri_affine, voxel_sizes


@dataclass
class SyntheticPair:
    mri_image: np.ndarray
    mri_affine: np.ndarray
    noise_sigma: float
    optical_data: np.ndarray
    spacing_um: tuple
    optical_to_mri: np.ndarray
    center_mm: np.ndarray  # true world position of the optical field centre
    mri_xyz_mm: np.ndarray  # particles present in the MRI
    optical_xyz_um: np.ndarray  # particles present in the optics (optical frame)
    shared: np.ndarray  # (S, 2) index pairs (optical, mri) of particles present in both

    @property
    def optical(self):
        from dualmode.io import OpticalImage

        return OpticalImage(self.optical_data, tuple(self.spacing_um))


def rotation_z(angle_deg: float, mirrored: bool = False, tilt_deg: float = 0.0) -> np.ndarray:
    """``Rz(angle) @ Rx(tilt) @ diag(1, -1 if mirrored, 1)``."""
    a, b = np.deg2rad(angle_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([1.0, -1.0 if mirrored else 1.0, 1.0])


def render_mri(xyz_mm, amplitudes, affine, shape, diameter_mm, noise_sigma=None, rng=None) -> np.ndarray:
    """``|H|`` of spheres on the Cartesian grid ``(shape, affine)`` plus complex noise of
    sigma ``noise_sigma``; the complex, noise-free ``H`` when ``noise_sigma`` is None."""
    shape = tuple(int(n) for n in shape)
    vox = np.sqrt((affine[:3, :3] ** 2).sum(0))
    ijk = apply_affine(np.linalg.inv(affine), xyz_mm)
    ks = [np.fft.fftshift(np.fft.fftfreq(n)) * n / (n * v) for n, v in zip(shape, vox)]  # cycles/mm
    kk = np.meshgrid(*ks, indexing="ij")
    kabs = np.sqrt(sum(k**2 for k in kk[:2]) + (kk[2] ** 2 if shape[2] > 1 else 0))
    u = np.pi * diameter_mm * kabs
    with np.errstate(invalid="ignore", divide="ignore"):
        form = np.where(u > 1e-6, 3 * (np.sin(u) - u * np.cos(u)) / np.maximum(u, 1e-6) ** 3, 1.0)
    spec = np.zeros(shape, complex)
    centre = np.array(shape) // 2
    for p, a in zip(ijk, amplitudes):
        x = (p - centre) * vox  # mm from the DFT origin
        e = [np.exp(-2j * np.pi * k * xi) if n > 1 else np.ones(1) for k, xi, n in zip(ks, x, shape)]
        spec += a * np.einsum("i,j,k->ijk", *e)
    spec *= form
    img = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spec)))
    if noise_sigma is None:
        return img
    img = img + noise_sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return np.abs(img).astype(np.float32)


def render_optical(xyz_um, brightness, blur_um, shape, spacing_um, diameter_um, rng,
                   background=100.0, read_noise=3.0) -> np.ndarray:
    """Supersampled spheres (projected discs in 2D) blurred per particle, plus background and noise."""
    shape = tuple(int(n) for n in shape)
    sp = np.asarray(spacing_um, float)
    img = np.zeros(shape)
    active = np.array([n > 1 for n in shape])
    ss = 3
    for c, bright, blur in zip(np.asarray(xyz_um, float), brightness, blur_um):
        half = (diameter_um / 2 + 4 * blur) / sp
        lo = np.floor(c / sp - half).astype(int)
        hi = np.ceil(c / sp + half).astype(int) + 1
        lo = np.where(active, np.maximum(lo, 0), 0)
        hi = np.where(active, np.minimum(hi, shape), 1)
        if np.any(hi <= lo):
            continue
        # supersampled occupancy only over the sphere's bounding box, then blurred over the patch
        s_lo = np.where(active, np.maximum(np.floor(c / sp - diameter_um / 2 / sp) - 1, lo), 0).astype(int)
        s_hi = np.where(active, np.minimum(np.ceil(c / sp + diameter_um / 2 / sp) + 2, hi), 1).astype(int)
        box = np.zeros(hi - lo)
        if np.all(s_hi > s_lo):
            axes = [(np.arange(l * ss, h * ss) + 0.5) / ss - 0.5 if a else np.zeros(1)
                    for l, h, a in zip(s_lo, s_hi, active)]
            d2 = sum(((ax * sp[i] - c[i]) ** 2 if active[i] else np.zeros(1)).reshape(
                [-1 if k == i else 1 for k in range(3)]) for i, ax in enumerate(axes))
            sphere = (d2 <= (diameter_um / 2) ** 2).astype(float)
            reps = [ss if a else 1 for a in active]
            n = s_hi - s_lo
            occ = sphere.reshape(n[0], reps[0], n[1], reps[1], n[2], reps[2]).mean(axis=(1, 3, 5))
            box[tuple(slice(a - b, a - b + m) for a, b, m in zip(s_lo, lo, n))] = occ
        box = ndi.gaussian_filter(box, np.where(active, blur / sp, 0), mode="constant")
        img[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += bright * box
    x = np.linspace(0, 1, shape[0])[:, None, None]
    y = np.linspace(0, 1, shape[1])[None, :, None]
    auto = background * (1 + 0.3 * np.sin(2.1 * x + 0.7) * np.cos(1.7 * y))
    expected = np.clip(img + auto, 0, None)
    out = rng.poisson(expected) + read_noise * rng.standard_normal(shape)
    return out.astype(np.float32)


def _place_world(rng, affine, shape, n_particles, min_separation_mm, slab_mm, slab_centre, axis, dz):
    """Random particle centres (world mm) inside the MRI field, at least ``min_separation_mm``
    apart; with ``slab_mm`` (3D) within that distance along ``axis`` of ``slab_centre``."""
    vox = voxel_sizes(affine)
    three_d = shape[2] > 1
    lo = apply_affine(affine, [1.5, 1.5, 0.0 if not three_d else 1.5])
    hi = apply_affine(affine, [shape[0] - 2.5, shape[1] - 2.5, 0.0 if not three_d else shape[2] - 2.5])
    along_z = abs(axis[2]) > np.cos(np.deg2rad(10.0))
    oblique = bool(np.any(np.abs(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))) > 1e-9))
    ijk_lo = np.array([1.5, 1.5, 0.0 if not three_d else 1.5])
    ijk_hi = np.array([shape[0] - 2.5, shape[1] - 2.5, 0.0 if not three_d else shape[2] - 2.5])  # slab in world z (mid-field + the shift's z)
    pts: list = []
    tries = 0
    while len(pts) < n_particles and tries < 400 * n_particles:
        tries += 1
        p = lo + rng.random(3) * (hi - lo)
        if oblique:  # uniform inside the (rotated) grid, not in a world box
            p = apply_affine(affine, ijk_lo + (p - lo) / np.where(hi != lo, hi - lo, 1) * (ijk_hi - ijk_lo))
        if not three_d:
            p[2] = affine[2, 3] + rng.uniform(-0.2, 0.2) * vox[2]
        elif slab_mm is not None and along_z and not oblique:
            p[2] = 0.5 * (lo[2] + hi[2]) + dz + rng.uniform(-0.5, 0.5) * slab_mm
        elif slab_mm is not None and abs(np.dot(p - slab_centre, axis)) > slab_mm / 2:
            continue
        dims = 3 if three_d else 2
        if not pts or np.min(np.linalg.norm(np.asarray(pts)[:, :dims] - p[:dims], axis=1)) > min_separation_mm:
            pts.append(p)
    return np.array(pts)


def _add_clusters(rng, world, n_clusters, diameter_um, planar_axis, centre):
    """Give the ``n_clusters`` particles nearest ``centre`` 1-2 touching neighbours (centres one
    diameter apart), in the plane normal to ``planar_axis`` when given (a 2D slice or a thin slab)."""
    extra = []
    for c in world[np.argsort(np.linalg.norm(world - centre, axis=1))[:n_clusters]]:
        for _ in range(int(rng.integers(1, 3))):
            d = rng.standard_normal(3)
            if planar_axis is not None:
                d -= np.dot(d, planar_axis) * planar_axis
            anchor = extra[-1] if extra and rng.random() < 0.5 and len(extra) % 2 else c
            extra.append(anchor + diameter_um * 1e-3 * d / np.linalg.norm(d))
    return np.r_[world, np.array(extra).reshape(-1, 3)]


def _optical_frame(rot, centre, osp, oshape):
    """``optical_to_mri``: optical um -> world mm with the optical data's centre at ``centre``
    (a stack: the middle of the stack; widefield: the focal plane at optical z = 0)."""
    o_centre = (np.asarray(oshape) - 1) / 2 * osp
    if oshape[2] == 1:
        o_centre[2] = 0.0
    o2m = np.eye(4)
    o2m[:3, :3] = 1e-3 * rot
    o2m[:3, 3] = centre - 1e-3 * rot @ o_centre
    return o2m


def _split_outliers(rng, opt, osp, oshape, margin, n_world, outlier_fraction):
    """Indices of particles kept in the MRI and in the optics (in-field ones dropped from one side)."""
    inside = np.all((opt[:, :2] > -margin) & (opt[:, :2] < (oshape[:2] - 1) * osp[:2] + margin), axis=1)
    if oshape[2] > 1:
        inside &= (opt[:, 2] > 0) & (opt[:, 2] < (oshape[2] - 1) * osp[2])
    in_idx = np.flatnonzero(inside)
    n_out = int(round(outlier_fraction * len(in_idx)))
    dropped = rng.choice(in_idx, size=min(n_out, len(in_idx)), replace=False)
    half = len(dropped) // 2
    only_mri, only_opt = dropped[:half], dropped[half:]
    return np.setdiff1d(np.arange(n_world), only_opt), np.setdiff1d(in_idx, only_mri)


def _mri_image(rng, world, amps, affine, shape, diameter_um, snr):
    """``|H|`` with the median particle peak at ``snr`` (noise sigma 1)."""
    clean = render_mri(world, amps, affine, shape, diameter_um * 1e-3)
    ijk = np.rint(apply_affine(np.linalg.inv(affine), world)).astype(int)
    ijk = np.clip(ijk, 0, np.array(shape) - 1)
    gain = snr / np.median(np.abs(clean[tuple(ijk.T)]))
    noise = rng.standard_normal((2, *shape))
    return np.abs(gain * clean + noise[0] + 1j * noise[1]).astype(np.float32)


def oblique_affine(matrix=(48, 48, 24), voxel_mm=(0.2, 0.2, 0.4), euler_xz_deg=(25.0, 15.0)) -> np.ndarray:
    """An oblique, anisotropic MRI affine (rotated by x then z Euler angles), centred on the origin."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xz", euler_xz_deg, degrees=True).as_matrix()
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(voxel_mm, float)
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(matrix) - 1) / 2)
    return aff


def make_pair(
    rng: np.random.Generator | int = 0,
    *,
    mri_matrix=(64, 64, 1),
    mri_fov_mm=(14.0, 14.0, 1.5),
    n_particles: int = 40,
    diameter_um: float = 200.0,
    snr: float = 20.0,
    optical_shape=(400, 400, 1),
    optical_spacing_um=(12.0, 12.0, 50.0),
    angle_deg: float = 20.0,
    mirrored: bool = False,
    tilt_deg: float = 0.0,
    rotation=None,
    shift_mm=(1.0, -0.5, 0.0),
    outlier_fraction: float = 0.2,
    brightness: float = 400.0,
    scatter_per_um: float = 0.15,
    min_separation_mm: float = 0.8,
    slab_mm: float | None = None,
    n_clusters: int = 0,
    mri_affine_override=None,
) -> SyntheticPair:
    """A random particle phantom seen by both modalities with a known transform.

    Particles fill the MRI field (so many fall outside the optical field: partial
    overlap); ``outlier_fraction`` of those inside the optical field are removed
    from one modality or the other (e.g. no hyperpolarisation, or out of focus).
    ``shift_mm`` moves the optical data's centre away from the MRI centre; ``slab_mm``
    confines a 3D phantom's particles to a slab of that thickness around it, normal to the
    optical axis. For a 2D MRI (``k = 1``) particles lie in the slice; for 2D optics the
    focal plane passes through the optical centre and defocus blurs particles with ``|dz|``.

    ``rotation`` (3x3, the optical x, y, z axes as columns in MRI world; proper or not)
    replaces ``rotation_z(angle_deg, mirrored, tilt_deg)``. ``n_clusters`` particles get
    1-2 touching neighbours. ``mri_affine_override`` (4x4) gives an oblique or anisotropic
    MRI grid (``mri_fov_mm`` is then ignored).

    Examples
    --------
    >>> pair = make_pair(0, n_particles=30)
    >>> pair.mri_image.shape, pair.optical_data.shape
    ((64, 64, 1), (400, 400, 1))
    """
    rng = np.random.default_rng(rng)
    shape = tuple(mri_matrix)
    affine = (np.asarray(mri_affine_override, float) if mri_affine_override is not None
              else mri_affine(mri_matrix, mri_fov_mm))
    rot = rotation_z(angle_deg, mirrored, tilt_deg) if rotation is None else np.asarray(rotation, float)
    axis = rot[:, 2] / np.linalg.norm(rot[:, 2])
    centre = apply_affine(affine, np.array(shape) // 2) + np.asarray(shift_mm, float)
    world = _place_world(rng, affine, shape, n_particles, min_separation_mm, slab_mm, centre, axis,
                         float(shift_mm[2]))
    osp = np.asarray(optical_spacing_um, float)
    oshape = np.asarray(optical_shape)
    if shape[2] > 1 and oshape[2] == 1:  # widefield against a 3D MRI: focal plane at the mean depth
        centre = centre + axis * np.mean((world - centre) @ axis)
    if n_clusters:
        world = _add_clusters(rng, world, n_clusters, diameter_um, axis if (shape[2] == 1 or slab_mm) else None,
                              centre)
    o2m = _optical_frame(rot, centre, osp, oshape)
    opt = apply_affine(np.linalg.inv(o2m), world)
    mri_keep, opt_keep = _split_outliers(rng, opt, osp, oshape, diameter_um, len(world), outlier_fraction)
    amps = rng.uniform(0.7, 1.3, len(world))
    img = _mri_image(rng, world[mri_keep], amps[mri_keep], affine, shape, diameter_um, snr)
    # optics: blur grows with depth (z-stack: below the first plane) or defocus (widefield)
    ox = opt[opt_keep]
    blur = 8.0 + scatter_per_um * np.abs(ox[:, 2])
    bright = brightness * rng.uniform(0.7, 1.3, len(ox))
    data = render_optical(ox, bright, blur, optical_shape, osp, diameter_um, rng)
    shared_ids = np.intersect1d(mri_keep, opt_keep)
    shared = np.array([[np.searchsorted(opt_keep, s), np.searchsorted(mri_keep, s)] for s in shared_ids],
                      int).reshape(-1, 2)
    return SyntheticPair(img, affine, 1.0, data, tuple(osp), o2m, centre, world[mri_keep], ox, shared)
