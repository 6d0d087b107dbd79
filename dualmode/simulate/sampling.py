"""Where and when the simulated scanner samples k-space: positions, excitation order, sample times.

Trajectories (``SimulationConfig.trajectory``):

* ``cartesian``: line by line, readout along axis 0 (``N`` samples, one per ``dwell``),
  lines in linear order (optionally Poisson-disc undersampled: only the acquired lines
  are excited);
* ``radial``: full golden-angle spokes of ``2N`` samples (2x oversampled, ``dwell / 2``
  per sample; 3D: golden-means kooshball);
* ``centre-out``: half spokes from ``k = 0`` outward (UTE/ZTE style, ``N`` samples from
  the centre, golden angle over the full circle / sphere);
* ``spiral`` (2D): variable-density interleaves, ``dwell / 2`` per sample;
* ``spi``: single-point imaging: every Cartesian grid point is its own excitation,
  sampled at the fixed encoding time ``dead_time_ms`` after the pulse, points in
  centric order (nearest ``k = 0`` first), so RF depletion follows the point order.

Sample time ``t`` counts from the excitation: ``dead_time_ms`` then the readout.
Positions come from :mod:`dualmode.recon.trajectory` (they are coordinates, not a transform).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAJECTORIES = ("cartesian", "radial", "centre-out", "spiral", "spi")


@dataclass
class Sampling:
    """Every k-space sample of one shot, in storage order.

    ``coords (M, 3)`` cycles/FOV; ``excitation (M,)`` index of the RF pulse that sampled it;
    ``time_ms (M,)`` time since that pulse; ``centre_time_ms`` the time of the ``k = 0``
    sample. Header fields: ``trajectory`` (ISMRMRD name), ``mask`` / ``line_order`` (Cartesian),
    ``readout_length`` (non-Cartesian). ``shape``: the data shape of one shot and coil.
    """

    coords: np.ndarray
    excitation: np.ndarray
    time_ms: np.ndarray
    centre_time_ms: float
    n_excitations: int
    shape: tuple
    trajectory: str
    mask: np.ndarray | None = None
    line_order: np.ndarray | None = None
    readout_length: int | None = None


def sampling(cfg, rng, matrix) -> Sampling:
    """The sampling of ``cfg.trajectory`` on an image ``matrix`` (see module docstring)."""
    r = float(cfg.undersample)
    if r < 1:
        raise ValueError("--undersample must be >= 1")
    kind = cfg.trajectory
    if kind not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {kind!r} ({', '.join(TRAJECTORIES)})")
    dwell_ms = cfg.dwell_us * 1e-3
    if kind == "cartesian":
        return _cartesian(cfg, rng, matrix, r, dwell_ms)
    if kind == "spi":
        return _spi(cfg, matrix)
    return _readouts(cfg, matrix, r, dwell_ms)


def _grid_coords(matrix) -> np.ndarray:
    axes = [np.arange(n) - n // 2 for n in matrix]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)


def _cartesian(cfg, rng, matrix, r, dwell_ms) -> Sampling:
    from dualmode.recon import trajectory

    mask = None
    if r > 1:
        calib = (max(matrix[1] // 8, 2), max(matrix[2] // 8, 1))
        mask = trajectory.poisson_disc_mask(matrix[1:], r, calib=calib, seed=int(rng.integers(2**31)))
    linear = np.arange(matrix[1] * matrix[2]).reshape(matrix[2], matrix[1]).T  # k_j fastest
    acquired = np.ones(matrix[1:], bool) if mask is None else mask
    order = np.full(matrix[1:], -1)
    order[acquired] = np.argsort(np.argsort(linear[acquired]))  # only acquired lines are excited
    coords = _grid_coords(matrix)
    exc = np.broadcast_to(order[None], matrix).reshape(-1)
    t_read = dwell_ms * (coords[:, 0] + matrix[0] // 2)
    return Sampling(coords, exc, cfg.dead_time_ms + t_read, cfg.dead_time_ms + dwell_ms * (matrix[0] // 2),
                    int(acquired.sum()), tuple(matrix), "cartesian", mask=mask, line_order=order)


def _spi(cfg, matrix) -> Sampling:
    coords = _grid_coords(matrix)
    radius = np.sqrt(np.sum((coords / np.asarray(matrix)) ** 2, axis=1))
    order = np.lexsort((np.arange(len(coords)), np.round(radius, 12)))
    coords = coords[order]  # stored in acquisition (centric) order
    n = len(coords)
    t = np.full(n, cfg.dead_time_ms)
    return Sampling(coords, np.arange(n), t, cfg.dead_time_ms, n, (n,), "spi", readout_length=1)


def _readouts(cfg, matrix, r, dwell_ms) -> Sampling:
    from dualmode.recon import trajectory

    n, kind = matrix[0], cfg.trajectory
    three_d = cfg.ndim == 3
    if kind == "spiral" and three_d:
        raise ValueError("the simulator's spiral trajectory is 2D only (use --ndim 2)")
    if kind == "radial":
        if three_d:
            spokes = max(int(round(np.pi / 2 * matrix[0] * matrix[1] / r)), 8)
            coords = trajectory.radial_3d(spokes, 2 * n, matrix)
        else:
            coords = trajectory.golden_angle_radial(max(int(round(np.pi / 2 * n / r)), 4), 2 * n, matrix[:2])
        centre = n
    elif kind == "centre-out":
        coords = _centre_out(matrix, r, three_d)
        centre = 0
    else:
        coords = trajectory.variable_density_spiral(8, 8 * n, matrix[:2], undersampling=r)
        centre = 0
    n_exc, n_read = coords.shape[:2]
    if coords.shape[-1] == 2:
        coords = np.concatenate([coords, np.zeros((n_exc, n_read, 1))], axis=-1)
    dt = dwell_ms / 2  # 2x oversampled readouts
    t = np.tile(cfg.dead_time_ms + dt * np.arange(n_read), n_exc)
    return Sampling(coords.reshape(-1, 3), np.repeat(np.arange(n_exc), n_read), t, cfg.dead_time_ms + dt * centre,
                    n_exc, (n_exc * n_read,), kind, readout_length=n_read)


def _centre_out(matrix, r, three_d: bool) -> np.ndarray:
    """Half spokes from the centre: ``N`` samples ``0 .. N/2`` (step 1/2), golden angle / golden means."""
    n = matrix[0]
    radius = np.arange(n) / 2.0
    if three_d:
        spokes = max(int(round(np.pi * matrix[0] * matrix[1] / r)), 8)
        s = np.arange(spokes)
        z = 2 * ((s * 0.4656) % 1.0) - 1  # golden means over the full sphere
        az = 2 * np.pi * ((s * 0.6823) % 1.0)
        rho = np.sqrt(1 - z**2)
        direction = np.stack([rho * np.cos(az), rho * np.sin(az), z], axis=-1)
        scale = np.asarray(matrix, float) / n
    else:
        spokes = max(int(round(np.pi * n / r)), 8)
        angle = np.arange(spokes) * np.pi * (3 - np.sqrt(5))  # golden angle over 2 pi
        direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        scale = np.asarray(matrix[:2], float) / n
    return radius[None, :, None] * direction[:, None, :] * scale
