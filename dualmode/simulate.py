"""Simulator of a dual-mode acquisition folder with ground truth.

Writes the acquisition-folder format (``docs/acquisition-format.md``):
hyperpolarized 13C k-space with alternating polarization sign as ISMRMRD, the
fluorescence of the same particles as OME-TIFF, the manifest, and
``truth/`` + ``truth.json`` which the pipeline never reads.

Physics in the simulation
    * 13C: diamond particles (100-300 um) carry hyperpolarized signal H proportional
      to their volume in each voxel (partial volume by super-sampling); a
      sign-invariant background compartment B (thermal 13C / other material);
      shot k gives ``s_k a_k e^{i phi_k} H + B + drift_k + noise`` with amplitude
      asymmetry between + and - shots, a phase difference, decay of the
      polarization from shot to shot, a linear drift; RF depletion weights the
      k-space lines of each shot in acquisition order (``cos alpha`` per excitation).
    * Optics: the same particles seen through tissue: depth-dependent scattering
      blur and attenuation, autofluorescence of the tissue, Poisson photon noise and
      Gaussian read noise, placed by a known rigid transform (rotation about z,
      translation, optional mirror) relative to the MRI frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from dualmode.conventions import apply_affine, fft_centered, mri_affine, optical_affine
from dualmode.io.ismrmrd_io import write_ismrmrd
from dualmode.io.kspace import KSpace, KSpaceHeader
from dualmode.io.manifest import FORMAT
from dualmode.io.optics import write_ome_frames, write_ome_tiff
from dualmode.recon.hyperpolarized import kspace_weighting
from dualmode.recon.schemes import polarization_scheme

C13_FREQUENCY_7T_HZ = 75.47e6


@dataclass
class SimulationConfig:
    """Every knob of the simulator (units in the names). CLI flags mirror these fields."""

    seed: int = 0
    ndim: int = 2
    snr: float = 20.0
    background_ratio: float = 10.0
    n_particles: int = 12
    particles_outside_optics: int = 2
    diameter_um: tuple[float, float] = (100.0, 300.0)
    # MRI
    fov_mm: float = 12.8
    matrix: int = 64
    slice_mm: float = 1.0
    scheme: str = "+-"
    n_cycles: int = 2
    amplitude_asymmetry: float = 0.1
    phase_difference_deg: float = 20.0
    shot_decay: float = 0.97
    linear_drift: float = 0.0
    flip_angle_deg: float | None = None  # None: cos(alpha)^lines = 0.75 over one shot
    tr_ms: float = 10.0
    trajectory: str = "cartesian"
    undersample: float = 1.0
    # optics
    optical_field_mm: float = 5.0
    optical_pixel_um: float = 10.0
    optical_z_step_um: float = 50.0
    optical_z_slices: int = 20
    rotation_deg: float = 0.0
    mirror: bool = False
    widefield: bool = False
    outliers: float = 0.0
    depth_mm: float = 0.5
    autofluorescence: float = 0.3
    photons: float = 2000.0
    read_noise: float = 5.0
    optical_frames: int = 0
    modulation_contrast: float = 0.1
    placement_error_mm: float = 0.5
    extra: dict = field(default_factory=dict)


def _mri_grid(cfg: SimulationConfig):
    if cfg.ndim == 2:
        matrix = (cfg.matrix, cfg.matrix, 1)
        fov = (cfg.fov_mm, cfg.fov_mm, cfg.slice_mm)
    elif cfg.ndim == 3:
        nz = max(cfg.matrix // 2, 8)
        matrix = (cfg.matrix, cfg.matrix, nz)
        fov = (cfg.fov_mm, cfg.fov_mm, cfg.fov_mm * nz / cfg.matrix)
    else:
        raise ValueError("ndim must be 2 or 3")
    return matrix, fov


def _rotation(cfg: SimulationConfig) -> np.ndarray:
    t = np.deg2rad(cfg.rotation_deg)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    return rz @ np.diag([-1.0, 1.0, 1.0]) if cfg.mirror else rz


def _render_volume_fraction(centres_vox, radii_vox, shape, ss: int, column: bool, weights=None) -> np.ndarray:
    """Particle volume per voxel (in voxel units, times ``weights``) by super-sampling each particle's box.

    ``column=True`` (2D): integrate the sphere thickness ``2 sqrt(r^2 - rho^2)`` along k,
    assuming the particle lies wholly inside the slice.
    """
    out = np.zeros(shape, float)
    weights = np.ones(len(centres_vox)) if weights is None else weights
    for c, r, wgt in zip(centres_vox, radii_vox, weights):
        if wgt == 0:
            continue
        lo = np.maximum(np.floor(c - r.max() - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r.max() + 2).astype(int), shape)
        if column:
            lo[2], hi[2] = 0, 1
        axes = []
        for d in range(3):
            if column and d == 2:
                axes.append(np.array([0.0]))
            else:
                axes.append(np.arange(lo[d] * ss, hi[d] * ss) / ss + (0.5 / ss - 0.5))
        g = np.meshgrid(*axes, indexing="ij")
        if column:
            rho2 = ((g[0] - c[0]) / r[0]) ** 2 + ((g[1] - c[1]) / r[1]) ** 2
            val = 2 * r[2] * np.sqrt(np.clip(1 - rho2, 0, None))
            val = val.reshape(hi[0] - lo[0], ss, hi[1] - lo[1], ss, 1).mean(axis=(1, 3))
        else:
            d2 = sum(((g[d] - c[d]) / r[d]) ** 2 for d in range(3))
            val = (d2 <= 1).astype(float)
            val = val.reshape(hi[0] - lo[0], ss, hi[1] - lo[1], ss, hi[2] - lo[2], ss).mean(axis=(1, 3, 5))
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += wgt * val
    return out


def _background_compartment(shape, rng) -> np.ndarray:
    """Smooth ellipsoidal slab of sign-invariant signal (tissue/thermal 13C), peak 1."""
    idx = np.meshgrid(*[np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape], indexing="ij")
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    ax, ay = rng.uniform(0.35, 0.5, 2)
    inside = ((idx[0] - cx) / ax) ** 2 + ((idx[1] - cy) / ay) ** 2
    body = 1.0 / (1.0 + np.exp((inside - 1.0) / 0.05))
    return body * (1.0 + 0.15 * idx[0])


def _place_particles(cfg, rng, mri_aff, matrix, fov, field_centre_mm):
    """Particle centres (MRI mm) and diameters: most inside the optical field, some outside."""
    n_in = cfg.n_particles - cfg.particles_outside_optics
    half = cfg.optical_field_mm / 2 - 0.2
    pts, diam = [], []
    min_sep = 0.6  # mm, keeps particles resolvable at ~0.2-0.3 mm voxels
    zc = mri_aff[2, 3] + mri_aff[2, 2] * (matrix[2] // 2)
    mri_half = np.array(fov[:2]) / 2 - 0.6
    tries = 0
    while len(pts) < cfg.n_particles and tries < 20000:
        tries += 1
        inside = len(pts) < n_in
        if inside:
            xy = field_centre_mm[:2] + rng.uniform(-half, half, 2)
        else:
            xy = rng.uniform(-mri_half, mri_half, 2)
            if np.all(np.abs(xy - field_centre_mm[:2]) < cfg.optical_field_mm / 2 + 0.3):
                continue
        if np.any(np.abs(xy) > mri_half):
            continue
        if cfg.ndim == 2:
            z = zc
        else:
            depth_range = cfg.depth_mm if cfg.widefield else min(
                cfg.depth_mm, cfg.optical_z_slices * cfg.optical_z_step_um / 1000 - 0.2)
            z = field_centre_mm[2] + rng.uniform(0.1, max(depth_range, 0.15))
        p = np.array([*xy, z])
        if pts and np.min(np.linalg.norm(np.array(pts) - p, axis=1)) < min_sep:
            continue
        pts.append(p)
        diam.append(rng.uniform(*cfg.diameter_um))
    return np.array(pts), np.array(diam)


def _sampling(cfg, rng, matrix):
    """Sampling pattern: ``(mask, coords, readout_length)`` for the configured trajectory.

    Cartesian: variable-density Poisson-disc ``mask[k_j, k_k]`` of acquired lines with a
    fully sampled centre (``None`` when fully sampled). Radial: 2D golden-angle spokes of
    ``2N`` samples, ``pi/2 N / undersample`` spokes (Nyquist at ``undersample = 1``); 3D
    golden-means "kooshball" spokes of ``2N`` samples, ``pi/2 N_0 N_1 / undersample`` spokes.
    Spiral (2D only): variable-density interleaves with the edge gap set by ``undersample``.
    Generators: :mod:`dualmode.recon.trajectory`.
    """
    from dualmode.recon import trajectory

    r = float(cfg.undersample)
    if r < 1:
        raise ValueError("--undersample must be >= 1")
    n = matrix[0]
    if cfg.trajectory == "cartesian":
        if r == 1:
            return None, None, None
        calib = (max(matrix[1] // 8, 2), max(matrix[2] // 8, 1))
        return trajectory.poisson_disc_mask(matrix[1:], r, calib=calib, seed=int(rng.integers(2**31))), None, None
    if cfg.trajectory not in ("radial", "spiral"):
        raise ValueError(f"unknown trajectory {cfg.trajectory!r} (cartesian, radial, spiral)")
    if cfg.ndim == 3 and cfg.trajectory == "radial":
        spokes = max(int(round(np.pi / 2 * matrix[0] * matrix[1] / r)), 8)
        coords = trajectory.radial_3d(spokes, 2 * n, matrix)
        return None, coords.reshape(-1, 3), coords.shape[1]
    if cfg.ndim != 2:
        raise ValueError(f"the simulator's {cfg.trajectory} trajectory is 2D only (use --ndim 2, "
                         "or --trajectory radial in 3D)")
    if cfg.trajectory == "radial":
        coords = trajectory.golden_angle_radial(max(int(round(np.pi / 2 * n / r)), 4), 2 * n, matrix[:2])
    else:
        coords = trajectory.variable_density_spiral(8, 8 * n, matrix[:2], undersampling=r)
    n_read = coords.shape[1]
    coords3 = np.zeros((coords.shape[0] * n_read, 3))
    coords3[:, :2] = coords.reshape(-1, 2)
    return None, coords3, n_read


def simulate_mri(cfg, rng, matrix, fov, aff, centres_mm, diam_um, polarization, in_mri=None):
    """k-space of every shot plus the truth images (H at unit mean polarization, |B|).

    ``in_mri[p] = 0`` leaves particle ``p`` without hyperpolarized signal (an outlier seen
    by optics only).
    """
    vox = np.array(fov) / np.array(matrix)
    centres_vox = apply_affine(np.linalg.inv(aff), centres_mm)
    radii_vox = (diam_um[:, None] / 2000.0) / vox[None, :]
    column = cfg.ndim == 2
    h = _render_volume_fraction(centres_vox, radii_vox, matrix, ss=8 if column else 4, column=column,
                                weights=in_mri)
    h /= h.max()
    b = cfg.background_ratio * _background_compartment(matrix, rng) * np.exp(1j * rng.uniform(-np.pi, np.pi))
    n = polarization.size
    amp = np.where(polarization > 0, 1 + cfg.amplitude_asymmetry / 2, 1 - cfg.amplitude_asymmetry / 2)
    amp = amp * cfg.shot_decay ** np.arange(n)
    phase = np.where(polarization > 0, 0.0, np.deg2rad(cfg.phase_difference_deg)) + rng.normal(0, 0.05, n)
    c = amp * np.exp(1j * phase)
    drift_shape = _background_compartment(matrix, np.random.default_rng(cfg.seed + 99))
    mask, coords, n_read = _sampling(cfg, rng, matrix)
    if coords is None:
        n_lines = matrix[1] * matrix[2]
        flip = _flip_angle(cfg, n_lines)
        line_order = np.arange(n_lines).reshape(matrix[1:])
        w = kspace_weighting(line_order, flip, cfg.tr_ms)[None]
        kh, kb, kd = (fft_centered(x) for x in (h, b, drift_shape))
        shape = matrix
    else:
        from dualmode.recon.hyperpolarized import excitation_weights
        from dualmode.recon.nufft import nufft

        n_spokes = coords.shape[0] // n_read
        flip = _flip_angle(cfg, n_spokes)
        line_order = None
        w = np.repeat(excitation_weights(n_spokes, flip, cfg.tr_ms), n_read)
        w /= w.mean()
        volumes = np.stack([h, b, drift_shape]).astype(complex)
        if cfg.ndim == 2:
            kh, kb, kd = nufft(volumes[..., 0], coords[:, :2], eps=1e-7)
        else:
            kh, kb, kd = nufft(volumes, coords, eps=1e-7)
        shape = (coords.shape[0],)
    sigma = 1.0 / cfg.snr  # image-domain noise per real/imag component; peak |H| = 1
    k_sigma = sigma * np.sqrt(np.prod(matrix))
    data = np.empty((n, 1, *shape), np.complex64)
    for k in range(n):
        noise = rng.normal(0, k_sigma, shape) + 1j * rng.normal(0, k_sigma, shape)
        data[k, 0] = polarization[k] * c[k] * kh * w + kb + cfg.linear_drift * k * kd + noise
    if mask is not None:
        data[:, :, :, ~mask] = 0
    truth_h = h * np.abs(c).mean()
    sampling = {"mask": mask, "coords": coords, "readout_length": n_read, "line_order": line_order, "flip": flip}
    return data, truth_h, np.abs(b), sampling, sigma, c


def _flip_angle(cfg, n_excitations: int) -> float:
    """Configured flip angle, or the one leaving cos(alpha)^n = 0.75 after one shot."""
    if cfg.flip_angle_deg is not None:
        return float(cfg.flip_angle_deg)
    return float(np.rad2deg(np.arccos(0.75 ** (1.0 / n_excitations))))


def _render_optics(cfg, rng, pts_um, diam_um, depth_mm, tissue_fn, in_optics):
    """Fluorescence image ``[x, y, z]`` and per-particle NV brightness (photons).

    ``in_optics[p] = 0`` makes particle ``p`` dark (an outlier seen by MRI only).
    """
    n_xy = int(round(cfg.optical_field_mm * 1000 / cfg.optical_pixel_um))
    nz = 1 if cfg.ndim == 2 or cfg.widefield else cfg.optical_z_slices
    shape = (n_xy, n_xy, nz)
    spacing = np.array([cfg.optical_pixel_um, cfg.optical_pixel_um, cfg.optical_z_step_um])
    nv = np.zeros(shape, float)
    bright = rng.uniform(0.7, 1.3, len(pts_um)) * cfg.photons * in_optics
    for p, d, depth, b0 in zip(pts_um, diam_um, depth_mm, bright):
        blur_um = 5.0 + 120.0 * depth  # scattering: ~0.12 mm blur per mm of tissue
        atten = np.exp(-depth / 0.8)
        r_vox = (d / 2 + 3 * blur_um) / spacing
        c = p / spacing
        lo = np.maximum(np.floor(c - r_vox).astype(int), 0)
        hi = np.minimum(np.ceil(c + r_vox + 1).astype(int), shape)
        if nz == 1:
            lo[2], hi[2] = 0, 1
        if np.any(hi <= lo) or b0 == 0:
            continue
        g = np.meshgrid(*[np.arange(lo[i], hi[i]) * spacing[i] for i in range(3)], indexing="ij")
        if nz == 1:
            rho2 = (g[0] - p[0]) ** 2 + (g[1] - p[1]) ** 2
            blob = np.sqrt(np.clip((d / 2) ** 2 - rho2, 0, None)) / (d / 2)
        else:
            r2 = sum((g[i] - p[i]) ** 2 for i in range(3))
            blob = (r2 <= (d / 2) ** 2).astype(float)
        sig = [blur_um / spacing[0], blur_um / spacing[1], 0 if nz == 1 else 3 * blur_um / spacing[2]]
        blob = ndimage.gaussian_filter(blob, sig, mode="constant")
        if blob.max() > 0:
            nv[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += b0 * atten * blob / blob.max()
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    auto = cfg.autofluorescence * cfg.photons * tissue_fn(grid)
    return nv, auto, spacing


def _camera(rng, cfg, expected):
    return (rng.poisson(np.clip(expected, 0, None)) + rng.normal(0, cfg.read_noise, expected.shape)).astype(np.float32)


def simulate(out_dir: str | os.PathLike, cfg: SimulationConfig | None = None) -> dict:
    """Write a simulated acquisition folder to ``out_dir``; return the truth dict.

    The folder name becomes the acquisition name. Existing files are overwritten.
    """
    cfg = cfg or SimulationConfig()
    rng = np.random.default_rng(cfg.seed)
    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, "mri"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "optics"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "truth"), exist_ok=True)
    matrix, fov = _mri_grid(cfg)
    aff = mri_affine(matrix, fov, (0.0, 0.0, 0.0))
    polarization = polarization_scheme(cfg.scheme, cfg.n_cycles).astype(int)

    # optical frame: rotation (+ mirror) about z, field centre at a random MRI position
    rot = _rotation(cfg)
    zc = aff[2, 3] + aff[2, 2] * (matrix[2] // 2)
    surface_z = zc if cfg.ndim == 2 else -fov[2] / 2 + 0.5
    field_centre = np.array([*rng.uniform(-1.5, 1.5, 2), surface_z])
    centres_mm, diam_um = _place_particles(cfg, rng, aff, matrix, fov, field_centre)
    n_xy = int(round(cfg.optical_field_mm * 1000 / cfg.optical_pixel_um))
    centre_um = np.array([(n_xy - 1) / 2 * cfg.optical_pixel_um] * 2 + [0.0])
    opt_to_mri = np.eye(4)
    opt_to_mri[:3, :3] = rot * 1e-3
    opt_to_mri[:3, 3] = field_centre - rot @ centre_um * 1e-3

    # outliers: in-field particles seen by one modality only (alternately optics-only, MRI-only)
    in_mri, in_optics = np.ones(len(centres_mm)), np.ones(len(centres_mm))
    n_field = cfg.n_particles - cfg.particles_outside_optics
    picks = rng.permutation(min(n_field, len(centres_mm)))[: int(round(cfg.outliers * n_field))]
    in_mri[picks[0::2]] = 0
    in_optics[picks[1::2]] = 0
    data, truth_h, truth_b, sampling, sigma, shot_c = simulate_mri(
        cfg, rng, matrix, fov, aff, centres_mm, diam_um, polarization, in_mri)

    pts_um = apply_affine(np.linalg.inv(opt_to_mri), centres_mm)
    if cfg.ndim == 2:
        depth_mm = rng.uniform(0, cfg.depth_mm, len(pts_um))
        pts_um[:, 2] = 0.0
    else:
        depth_mm = np.clip(pts_um[:, 2] / 1000.0, 0, None)
    render_um = pts_um.copy()
    if cfg.widefield:  # one camera image: every particle projected onto the focal plane
        render_um[:, 2] = 0.0
    tissue = _background_compartment((64, 64, 1), np.random.default_rng(cfg.seed + 7))[..., 0]

    def tissue_fn(grid):
        mri_xyz = apply_affine(opt_to_mri, np.stack([g.ravel() for g in grid], axis=1))
        ij = apply_affine(np.linalg.inv(mri_affine((64, 64, 1), (fov[0], fov[1], 1.0))), mri_xyz)[:, :2]
        vals = ndimage.map_coordinates(tissue, ij.T, order=1, mode="nearest")
        return (0.5 + vals).reshape(grid[0].shape)

    nv, auto, spacing = _render_optics(cfg, rng, render_um, diam_um, depth_mm, tissue_fn, in_optics)
    optics_sec = {
        "image": "optics/fluorescence.ome.tif",
        "channel": "NV (red)",
        "particle_diameter_um": float(np.mean(cfg.diameter_um)),
        "placement": {
            "center_mm": (field_centre + np.r_[rng.normal(0, cfg.placement_error_mm, 2), 0.0]).round(3).tolist(),
            "uncertainty_mm": max(3 * cfg.placement_error_mm, 1.0),
            "note": "stage position of the optical field centre in MRI world (RAS mm), rough",
        },
    }
    if cfg.optical_frames:
        states = np.arange(cfg.optical_frames) % 2
        bleach = np.exp(-np.arange(cfg.optical_frames) / (10.0 * cfg.optical_frames))
        frames = np.stack([
            _camera(rng, cfg, auto + nv * bl * (1 - cfg.modulation_contrast * (1 - st)))
            for st, bl in zip(states, bleach)])
        write_ome_frames(os.path.join(out_dir, "optics/modulated.ome.tif"), frames, spacing)
        optics_sec["modulation"] = {"frames": "optics/modulated.ome.tif", "states": states.tolist(),
                                    "kind": "microwave on/off (1 = NV bright state)"}
        image = frames.mean(axis=0)
    else:
        image = _camera(rng, cfg, auto + nv)
    write_ome_tiff(os.path.join(out_dir, optics_sec["image"]), image, spacing, ["NV fluorescence"])

    header = KSpaceHeader(
        matrix=matrix, fov_mm=fov, position_mm=(0.0, 0.0, 0.0), tr_ms=cfg.tr_ms, trajectory=cfg.trajectory,
        flip_angle_deg=sampling["flip"], nucleus="13C", frequency_hz=C13_FREQUENCY_7T_HZ,
        n_repetitions=polarization.size, n_coils=1, line_order=sampling["line_order"],
        extra={} if sampling["readout_length"] is None else {"readout_length": sampling["readout_length"]})
    ksp = KSpace(data, header, source="simulated", coords=sampling["coords"], mask=sampling["mask"])
    write_ismrmrd(os.path.join(out_dir, "mri/kspace.h5"), ksp)
    manifest = {
        "format": FORMAT,
        "sample": os.path.basename(os.path.normpath(out_dir)),
        "mri": {
            "source": {"format": "ismrmrd", "path": "mri/kspace.h5"},
            "polarization": polarization.tolist(),
            "scheme": cfg.scheme,
            "nucleus": "13C",
            "frequency_hz": C13_FREQUENCY_7T_HZ,
            "flip_angle_deg": sampling["flip"],
            "tr_ms": cfg.tr_ms,
            "geometry": {"matrix": list(matrix), "fov_mm": list(fov), "position_mm": [0.0, 0.0, 0.0],
                         "orientation": np.eye(3).tolist()},
        },
        "optics": optics_sec,
        "simulated": True,
    }
    with open(os.path.join(out_dir, "acquisition.json"), "w") as f:
        json.dump(manifest, f, indent=2)

    import nibabel as nib

    for name, arr in (("c13", truth_h), ("background", truth_b)):
        img = nib.Nifti1Image(arr.astype(np.float32), aff)
        img.set_sform(aff, code=1)
        img.set_qform(aff, code=1)
        nib.save(img, os.path.join(out_dir, "truth", f"{name}.nii.gz"))
    truth = {
        "particles": [
            {"mri_xyz_mm": c.round(5).tolist(), "optical_xyz_um": p.round(3).tolist(), "diameter_um": round(float(d), 2),
             "depth_mm": round(float(dm), 4), "in_optical_field": bool(_inside(p, n_xy, spacing, cfg)),
             "in_mri": bool(im), "in_optics": bool(io_)}
            for c, p, d, dm, im, io_ in zip(centres_mm, pts_um, diam_um, depth_mm, in_mri, in_optics)
        ],
        "mri_voxel_mm": (np.array(fov) / np.array(matrix)).tolist(),
        "optical_to_mri": opt_to_mri.tolist(),
        "noise_sigma": sigma,
        "noise_sigma_note": "per real/imaginary component of one shot image; peak |H| = 1",
        "shot_weights": [[float(v.real), float(v.imag)] for v in shot_c],
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
    }
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=2)
    return truth


def _inside(p_um, n_xy, spacing, cfg) -> bool:
    lim = (n_xy - 1) * spacing[0]
    ok = 0 <= p_um[0] <= lim and 0 <= p_um[1] <= lim
    if cfg.ndim == 3 and not cfg.widefield:
        ok = ok and 0 <= p_um[2] <= (cfg.optical_z_slices - 1) * spacing[2]
    return bool(ok)
