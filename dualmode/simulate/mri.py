"""Simulated 13C k-space of every shot: particles (analytic), background, drift, noise, physics.

Shot ``k`` (polarization sign ``s_k``) at sample ``j`` (position ``k_j``, time ``t_j`` after
its excitation ``e_j``):

.. math::

    y_{kj} = \\big[s_k c_k\\, w_{e_j} P(k_j) + (1 + \\epsilon_k) B(k_j) + \\tau_k D(k_j)\\big]\\,
             e^{-2\\pi i k_j\\cdot d_k / N}\\, e^{-(t_j - t_0)/T_2^*}\\, e^{-2\\pi i \\Delta f\\, t_j} + n_{kj}

* ``P``: the particles' analytic Fourier transform (:mod:`.analytic`), never the project's
  FFT/NUFFT (``kspace_model="grid"`` keeps the old FFT-of-the-truth for comparison);
* ``c_k``: amplitude asymmetry between + and - shots, phase difference, decay from shot to
  shot; ``w_e``: RF depletion ``sin(a) cos(a)^e`` in excitation order (normalised at the
  ``k = 0`` line for Cartesian, to mean 1 otherwise, as the scanner-side convention of
  :mod:`dualmode.recon.hyperpolarized`), written out here independently;
* ``B``: smooth sign-invariant background built on the grid (FFT/NUFFT of a grid image is
  fine for it: it cancels in the lock-in), with a random complex change ``epsilon_k``
  between shots (``background_jitter``); ``D``: a linear drift;
* ``d_k``: rigid displacement of the sample in shot ``k`` relative to shot 0 (``motion_um``);
* T2* decay (normalised to 1 at the time ``t_0`` of the ``k = 0`` sample) and off-resonance
  ``Delta f`` (a positive offset moves a Cartesian image by ``+Delta f N dwell`` voxels
  along the readout, axis 0);
* ``n``: complex Gaussian noise, ``sigma sqrt(prod N)`` per sample (image sigma ``1/snr``
  per component with the particle peak at 1).
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import fft_centered

from .analytic import Bodies, render_bodies, spectrum
from .sampling import Sampling, sampling as make_sampling

_MOTION_STREAM, _JITTER_STREAM = 0x6D6F74, 0x6A6974  # tags of the motion and jitter random streams


def _background_compartment(shape, rng) -> np.ndarray:
    """Smooth ellipsoidal slab of sign-invariant signal (tissue/thermal 13C), peak 1."""
    idx = np.meshgrid(*[np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape], indexing="ij")
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    ax, ay = rng.uniform(0.35, 0.5, 2)
    inside = ((idx[0] - cx) / ax) ** 2 + ((idx[1] - cy) / ay) ** 2
    body = 1.0 / (1.0 + np.exp((inside - 1.0) / 0.05))
    return body * (1.0 + 0.15 * idx[0])


def rf_weights(smp: Sampling, flip_deg: float, tr_ms: float = 0.0, t1_s: float = np.inf) -> np.ndarray:
    """Signal weight of every sample: ``sin(a) cos(a)^e exp(-e TR / T1)`` of its excitation ``e``.

    Normalised to 1 at the ``k = 0`` sample (Cartesian) or to mean 1 over excitations.
    """
    a = np.deg2rad(flip_deg)
    e = np.arange(smp.n_excitations)
    w = np.sin(a) * np.cos(a) ** e * np.exp(-e * tr_ms * 1e-3 / t1_s)
    if smp.trajectory == "cartesian":
        centre = np.flatnonzero(np.all(smp.coords == 0, axis=1))[0]
        w = w / w[smp.excitation[centre]]
    else:
        w = w / w.mean()
    return w[np.maximum(smp.excitation, 0)]


def readout_factor(smp: Sampling, t2star_ms: float | None, off_resonance_hz: float) -> np.ndarray:
    """T2* decay (1 at the ``k = 0`` time) times the off-resonance phase, per sample."""
    decay = 1.0 if not t2star_ms else np.exp(-(smp.time_ms - smp.centre_time_ms) / t2star_ms)
    return decay * np.exp(-2j * np.pi * off_resonance_hz * smp.time_ms * 1e-3)


def shot_displacements(cfg, n_shots: int) -> np.ndarray:
    """Rigid displacement (mm) of the sample in each shot relative to shot 0 (in-plane for 2D).

    Drawn from a random stream of its own (``seed`` and a tag), not the folder's: a folder with
    motion differs from the motion-free folder of the same seed by the motion only (same
    particles, noise and optics), so the two can be compared pair by pair.
    """
    d = np.zeros((n_shots, 3))
    if cfg.motion_um > 0:
        nd = 2 if cfg.ndim == 2 else 3
        rng = np.random.default_rng([cfg.seed, _MOTION_STREAM])
        d[1:, :nd] = rng.normal(0, cfg.motion_um / 1000.0, (n_shots - 1, nd))
    return d


def background_jitter(cfg, n_shots: int) -> np.ndarray:
    """Relative complex change ``epsilon_k`` of the background in each shot (own random stream,
    like :func:`shot_displacements`)."""
    if cfg.background_jitter <= 0:
        return np.zeros(n_shots, complex)
    rng = np.random.default_rng([cfg.seed, _JITTER_STREAM])
    return cfg.background_jitter * (rng.normal(size=n_shots) + 1j * rng.normal(size=n_shots)) / np.sqrt(2)


def _grid_kspace(image, smp: Sampling, matrix) -> np.ndarray:
    """k-space of a grid image at the samples: FFT on the grid, NUFFT elsewhere."""
    if smp.trajectory in ("cartesian", "spi"):
        k = fft_centered(image).reshape(-1)
        if smp.trajectory == "spi":
            idx = np.ravel_multi_index(tuple((smp.coords + np.asarray(matrix) // 2).astype(int).T), matrix)
            k = k[idx]
        return k
    from dualmode.recon.nufft import nufft

    if matrix[2] == 1:
        return nufft(image[..., 0].astype(complex), smp.coords[:, :2], eps=1e-7)
    return nufft(image.astype(complex), smp.coords, eps=1e-7)


def shot_weights(cfg, rng, polarization) -> np.ndarray:
    """Complex polarization ``c_k``: +/- asymmetry, decay over shots, phase difference and jitter."""
    n = polarization.size
    amp = np.where(polarization > 0, 1 + cfg.amplitude_asymmetry / 2, 1 - cfg.amplitude_asymmetry / 2)
    amp = amp * cfg.shot_decay ** np.arange(n)
    phase = np.where(polarization > 0, 0.0, np.deg2rad(cfg.phase_difference_deg)) + rng.normal(0, 0.05, n)
    return amp * np.exp(1j * phase)


def simulate_mri(cfg, rng, matrix, fov, aff, bodies: Bodies, polarization, n_particles: int, plan=None):
    """k-space of every shot plus the truth.

    Returns ``(data, truth, smp, flip)``: ``data (n_shots, 1, *smp.shape)``, ``truth`` a dict
    with ``h`` (truth image at unit mean polarization), ``b`` (``|B|``), ``sigma``, ``c``
    (shot weights), ``amplitude`` (integrated truth H per particle, voxel units),
    ``displacement_mm`` (per shot), ``scale`` (signal per voxel-unit volume). ``plan``: a
    planned acquisition (:mod:`dualmode.simulate.planned`), single points in the plan's order.
    """
    vox = np.array(fov) / np.array(matrix)
    two_d = cfg.ndim == 2
    h = render_bodies(bodies, aff, matrix, ss=8, project_z=two_d)
    scale = 1.0 / h.max()
    h *= scale
    b = cfg.background_ratio * _background_compartment(matrix, rng) * np.exp(1j * rng.uniform(-np.pi, np.pi))
    c = shot_weights(cfg, rng, polarization)
    drift_shape = _background_compartment(matrix, np.random.default_rng(cfg.seed + 99))
    if plan is None:
        smp = make_sampling(cfg, rng, matrix)
        flip = _flip_angle(cfg, smp.n_excitations)
    else:
        from .planned import planned_sampling

        smp, flip, plan_weights = planned_sampling(cfg, plan)
    k_mm = smp.coords / np.asarray(fov)
    if cfg.kspace_model == "analytic":
        kh = spectrum(bodies, k_mm, origin_mm=aff[:3, :3] @ (np.asarray(matrix) // 2) + aff[:3, 3])
        kh *= scale / np.prod(vox)
    elif cfg.kspace_model == "grid":
        kh = _grid_kspace(h, smp, matrix)
    else:
        raise ValueError(f"kspace_model must be 'analytic' or 'grid', got {cfg.kspace_model!r}")
    kb, kd = _grid_kspace(b, smp, matrix), _grid_kspace(drift_shape, smp, matrix)
    common = readout_factor(smp, cfg.t2star_ms, cfg.off_resonance_hz)
    kh = kh * (rf_weights(smp, flip, cfg.tr_ms) if plan is None else plan_weights)
    n = polarization.size
    disp = shot_displacements(cfg, n)
    jitter = background_jitter(cfg, n)
    sigma = 1.0 / cfg.snr
    k_sigma = sigma * np.sqrt(np.prod(matrix))
    data = np.empty((n, 1, *smp.shape), np.complex64)
    for k in range(n):
        move = np.exp(-2j * np.pi * (k_mm @ disp[k])) if np.any(disp[k]) else 1.0
        clean = (polarization[k] * c[k] * kh + (1 + jitter[k]) * kb + cfg.linear_drift * k * kd) * move * common
        noise = rng.normal(0, k_sigma, clean.shape) + 1j * rng.normal(0, k_sigma, clean.shape)
        data[k, 0] = (clean + noise).reshape(smp.shape)
    if smp.mask is not None:
        data[:, :, :, ~smp.mask] = 0
    mean_c = np.abs(c).mean()
    amplitude = bodies.particle_volume(n_particles) / np.prod(vox) * scale * mean_c
    truth = {"h": h * mean_c, "b": np.abs(b), "sigma": sigma, "c": c, "amplitude": amplitude,
             "displacement_mm": disp, "scale": scale,
             "h_bandlimited": bandlimited_image(bodies, aff, matrix) * scale * mean_c}
    return data, truth, smp, flip


def bandlimited_image(bodies: Bodies, aff, matrix) -> np.ndarray:
    """The particles seen by an ideal fully sampled Cartesian acquisition of this matrix (noise-free).

    The analytic spectrum on every grid point, inverse DFT by :mod:`numpy.fft` (the best any
    reconstruction at this resolution can give: the object convolved with the Dirichlet PSF).
    """
    matrix = tuple(int(n) for n in matrix)
    vox = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    axes = [np.arange(n) - n // 2 for n in matrix]
    k = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3) / (np.asarray(matrix) * vox)
    origin = aff[:3, :3] @ (np.asarray(matrix) // 2) + aff[:3, 3]
    spec = spectrum(bodies, k, origin_mm=origin).reshape(matrix) / np.prod(vox)
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spec))).real


def _flip_angle(cfg, n_excitations: int) -> float:
    """Configured flip angle, or the one leaving cos(alpha)^n = 0.75 after one shot."""
    if cfg.flip_angle_deg is not None:
        return float(cfg.flip_angle_deg)
    return float(np.rad2deg(np.arccos(0.75 ** (1.0 / n_excitations))))
