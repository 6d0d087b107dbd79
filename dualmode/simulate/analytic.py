"""Analytic k-space of the particles: the exact Fourier transform of every body at every sample.

The simulator must not share the reconstruction's transforms (the *inverse crime*: a
k-space made with the project's own FFT/NUFFT on the reconstruction grid hides every
error the two share). Here each particle is a union of solid ellipsoids (a sphere, a
prolate grain, or a cluster of touching spheres) whose 3D Fourier transform is known in
closed form and is evaluated at every k-space sample, wherever it lies.

Sphere of diameter ``d`` centred at ``c`` (Bracewell, *The Fourier Transform and its
Applications*, ch. 13; the form factor of small-angle scattering):

.. math::

    F(\\mathbf k) = V \\, \\frac{3(\\sin u - u\\cos u)}{u^3}\\, e^{-2\\pi i \\mathbf k\\cdot\\mathbf c},
    \\qquad u = \\pi d |\\mathbf k|, \\quad V = \\pi d^3 / 6,

``k`` in cycles/mm. An ellipsoid ``{x : |A^{-1}(x - c)| <= 1}`` with ``A = R diag(a, b, c)``
is the unit ball stretched by ``A``, so ``u = 2 pi |A^T k|`` and ``V = 4/3 pi abc``.
In 2D (a slice thicker than the particles) the image is the projection along z, whose
2D transform is the 3D one at ``k_z = 0``.

Scaling: the reconstruction convention (:mod:`dualmode.conventions`) is the
unnormalised DFT of an image whose voxel value is the particle volume fraction (in
voxel units), so a band-limited object gives ``S(k) = F(k) / V_voxel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sphere_form_factor(u: np.ndarray) -> np.ndarray:
    """``3 (sin u - u cos u) / u^3``, 1 at ``u = 0`` (series below ``u = 1e-3``).

    Examples
    --------
    >>> float(sphere_form_factor(np.array(0.0)))
    1.0
    """
    u = np.asarray(u, dtype=float)
    small = np.abs(u) < 1e-3
    us = np.where(small, 1.0, u)
    out = 3.0 * (np.sin(us) - us * np.cos(us)) / us**3
    return np.where(small, 1.0 - u**2 / 10.0, out)


@dataclass
class Bodies:
    """Solid ellipsoids making up the particles (one row per ellipsoid).

    ``centre_mm (M, 3)`` MRI world (RAS mm), ``semi_axes_mm (M, 3)``, ``rotation (M, 3, 3)``
    (columns: the ellipsoid axes in world), ``weight (M,)`` signal per unit volume,
    ``particle (M,)`` index of the particle each ellipsoid belongs to (clusters share one).
    """

    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray
    weight: np.ndarray
    particle: np.ndarray

    @property
    def volume_mm3(self) -> np.ndarray:
        return 4.0 / 3.0 * np.pi * np.prod(self.semi_axes_mm, axis=1)

    def moved(self, shift_mm) -> Bodies:
        """The same bodies translated by ``shift_mm`` (3,)."""
        return Bodies(self.centre_mm + np.asarray(shift_mm, float), self.semi_axes_mm, self.rotation,
                      self.weight, self.particle)

    def particle_volume(self, n_particles: int) -> np.ndarray:
        """Weighted volume (mm^3) of each particle: the integral of its signal density."""
        return np.bincount(self.particle, self.weight * self.volume_mm3, minlength=n_particles)

    def particle_centroid(self, n_particles: int) -> np.ndarray:
        """Volume-weighted centre (mm) of each particle."""
        w = self.volume_mm3 * np.maximum(self.weight, 1e-30)
        num = np.stack([np.bincount(self.particle, w * self.centre_mm[:, d], minlength=n_particles)
                        for d in range(3)], axis=1)
        return num / np.maximum(np.bincount(self.particle, w, minlength=n_particles), 1e-30)[:, None]


def spectrum(bodies: Bodies, k_mm: np.ndarray, origin_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Fourier transform ``sum_m w_m F_m(k)`` of all bodies at ``k_mm (M, 3)`` (cycles/mm).

    Positions are taken relative to ``origin_mm`` (the DFT origin of the grid).
    """
    k = np.asarray(k_mm, dtype=float)
    out = np.zeros(k.shape[0], complex)
    rel = bodies.centre_mm - np.asarray(origin_mm, float)
    for c, ax, rot, w, vol in zip(rel, bodies.semi_axes_mm, bodies.rotation, bodies.weight, bodies.volume_mm3):
        if w == 0:
            continue
        stretched = (k @ rot) * ax  # A^T k with A = R diag(ax)
        u = 2.0 * np.pi * np.sqrt(np.sum(stretched**2, axis=1))
        out += w * vol * sphere_form_factor(u) * np.exp(-2j * np.pi * (k @ c))
    return out


def make_bodies(rng, centres_mm: np.ndarray, diam_um: np.ndarray, weights: np.ndarray, *,
                clusters: int = 0, aspect: float = 1.0, flat: bool = False) -> Bodies:
    """Bodies for ``P`` particles: spheres, or prolate ellipsoids, the first ``clusters`` as clusters.

    A cluster holds 2-4 touching spheres whose total volume equals the sphere of the
    given diameter, arranged as a chain of random direction (in-plane when ``flat``).
    ``aspect > 1`` makes every other particle a prolate ellipsoid (long axis ``aspect``
    times the short ones, same volume, random orientation).
    """
    rows = []
    for p, (c, d, w) in enumerate(zip(np.asarray(centres_mm, float), np.asarray(diam_um, float) / 1000.0, weights)):
        if p < clusters:
            n_sub = int(rng.integers(2, 5))
            r = d / 2 / n_sub ** (1 / 3)
            pos = [np.zeros(3)]
            for _ in range(n_sub - 1):
                v = rng.normal(size=3)
                if flat:
                    v[2] = 0.0
                pos.append(pos[-1] + 2 * r * v / np.linalg.norm(v))
            pos = np.array(pos) - np.mean(pos, axis=0)
            rows += [(c + q, (r, r, r), np.eye(3), w, p) for q in pos]
        elif aspect != 1.0 and p % 2 == 1:
            short = d / 2 / aspect ** (1 / 3)
            rot = _random_rotation(rng, flat)
            rows.append((c, (aspect * short, short, short), rot, w, p))
        else:
            rows.append((c, (d / 2,) * 3, np.eye(3), w, p))
    if not rows:
        return Bodies(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros(0), np.zeros(0, int))
    c, ax, rot, w, p = zip(*rows)
    return Bodies(np.array(c), np.array(ax, float), np.array(rot), np.array(w, float), np.array(p, int))


def _random_rotation(rng, flat: bool) -> np.ndarray:
    if flat:  # long axis in the slice plane
        a = rng.uniform(0, np.pi)
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def render_bodies(bodies: Bodies, affine: np.ndarray, shape, *, ss: int = 8, project_z: bool = False) -> np.ndarray:
    """Signal volume per voxel (voxel units) by super-sampling: the truth image.

    ``project_z`` (2D slices): the integral through each body along z, in units of the
    slice thickness ``affine[2, 2]`` (the particle lies wholly inside the slice).
    Independent of :func:`spectrum` (a point-inside test, no transform).
    """
    inv = np.linalg.inv(affine)
    vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    out = np.zeros(shape, float)
    for c, ax, rot, w in zip(bodies.centre_mm, bodies.semi_axes_mm, bodies.rotation, bodies.weight):
        if w == 0:
            continue
        reach = float(ax.max())
        ijk = inv[:3, :3] @ c + inv[:3, 3]
        half = reach / vox + 1
        lo = np.maximum(np.floor(ijk - half).astype(int), 0)
        hi = np.minimum(np.ceil(ijk + half + 1).astype(int), shape)
        if project_z:
            lo[2], hi[2] = 0, 1
        if np.any(hi <= lo):
            continue
        axes = [np.arange(lo[d] * ss, hi[d] * ss) / ss + (0.5 / ss - 0.5) for d in range(2)]
        if project_z:
            nz = max(4 * ss, int(np.ceil(2 * reach / vox[0] * ss)))
            zs = c[2] + np.linspace(-reach, reach, nz, endpoint=False) + reach / nz
            dz = 2 * reach / nz / vox[2]  # z step in slice units
        else:
            axes.append(np.arange(lo[2] * ss, hi[2] * ss) / ss + (0.5 / ss - 0.5))
        g = np.meshgrid(*axes, indexing="ij")
        world = [affine[d, 0] * g[0] + affine[d, 1] * g[1] + affine[d, 3] for d in range(3)]
        if project_z:
            world = [wd[..., None] for wd in world]
            world[2] = world[2] * 0 + zs
        else:
            world = [wd + affine[d, 2] * g[2] for d, wd in enumerate(world)]
        world = np.broadcast_arrays(*world)
        rel = np.stack([wd - c[d] for d, wd in enumerate(world)], axis=-1) @ rot / ax
        inside = (np.sum(rel**2, axis=-1) <= 1).astype(float)
        if project_z:
            val = inside.sum(axis=-1) * dz
            val = val.reshape(hi[0] - lo[0], ss, hi[1] - lo[1], ss).mean(axis=(1, 3))[..., None]
        else:
            val = inside.reshape(hi[0] - lo[0], ss, hi[1] - lo[1], ss, hi[2] - lo[2], ss).mean(axis=(1, 3, 5))
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += w * val
    return out
