"""Simulated 13C k-space of the particles, the background and the shots.

Shot k gives ``s_k a_k e^{i phi_k} H + B + drift_k + noise`` with amplitude asymmetry
between + and - shots, a phase difference, decay of the polarization from shot to shot
and a linear drift; RF depletion weights the k-space lines of each shot in acquisition
order (``cos alpha`` per excitation).
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import apply_affine, fft_centered
from dualmode.recon.hyperpolarized import kspace_weighting


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
