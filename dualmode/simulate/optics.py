"""Simulated fluorescence of the particles: scattering blur, attenuation, autofluorescence, camera noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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


def _inside(p_um, n_xy, spacing, cfg) -> bool:
    lim = (n_xy - 1) * spacing[0]
    ok = 0 <= p_um[0] <= lim and 0 <= p_um[1] <= lim
    if cfg.ndim == 3 and not cfg.widefield:
        ok = ok and 0 <= p_um[2] <= (cfg.optical_z_slices - 1) * spacing[2]
    return bool(ok)
