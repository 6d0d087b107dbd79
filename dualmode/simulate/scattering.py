"""Light from a fluorescent particle buried in tissue: unscattered core plus a diffusion-theory halo.

A particle at depth ``z`` below the surface of a semi-infinite turbid medium (absorption
``mu_a``, reduced scattering ``mu_s'``, refractive index ``n``) is seen by a camera focused
on the surface as two parts:

* **unscattered (ballistic) light**, a fraction ``T_b = exp(-(mu_s + mu_a) z)`` with
  ``mu_s = mu_s' / (1 - g)``, imaged sharply (the particle's own shape);
* **diffuse light**, the rest, leaving the surface with the profile of an isotropic
  point source at depth ``z`` in the diffusion approximation with an extrapolated
  boundary (Farrell, Patterson & Wilson 1992, eq. 2 with the source at ``z`` instead of
  ``1/mu_t'``):

  .. math::

     R(\\rho; z) = \\frac{1}{4\\pi}\\Big[z\\,(\\mu_{eff} + 1/r_1)\\frac{e^{-\\mu_{eff} r_1}}{r_1^2}
                 + (z + 2 z_b)(\\mu_{eff} + 1/r_2)\\frac{e^{-\\mu_{eff} r_2}}{r_2^2}\\Big]

  with :math:`r_1^2 = z^2 + \\rho^2`, :math:`r_2^2 = (z + 2 z_b)^2 + \\rho^2`,
  :math:`\\mu_{eff} = \\sqrt{3 \\mu_a (\\mu_a + \\mu_s')}`, :math:`D = 1 / (3 (\\mu_a + \\mu_s'))`,
  :math:`z_b = 2 A D` and the internal-reflection factor :math:`A = (1 + r_{id}) / (1 - r_{id})`,
  :math:`r_{id} = -1.440 n^{-2} + 0.710 n^{-1} + 0.668 + 0.0636 n` (Egan & Hilgeman, as used by
  Farrell et al.). ``R`` is a flux per unit area (1/mm²) per unit source power; its integral over
  the surface is :math:`\\tfrac12 [e^{-\\mu_{eff} z} + e^{-\\mu_{eff} (z + 2 z_b)}]`
  (:func:`total_diffuse_reflectance`); its FWHM grows about linearly with depth
  (``2 z sqrt(2^(2/3) - 1) = 1.53 z`` without absorption and boundary).

The excitation reaching the particle is that of a broad beam in the deep diffusive regime,
``exp(-mu_eff z)`` (the build-up near the surface is ignored). Depths shallower than one
transport mean free path ``1 / mu_t'`` are evaluated there for the diffuse part (the
diffusion approximation does not hold closer to the surface).

Typical soft tissue in the red/near-infrared window (~700 nm, where NV centres emit):
``mu_s' ~ 1 /mm`` and ``mu_a ~ 0.01-0.05 /mm`` (Jacques 2013), ``g ~ 0.9``, ``n ~ 1.4``.

References
----------
T. J. Farrell, M. S. Patterson, B. Wilson, "A diffusion theory model of spatially resolved,
steady-state diffuse reflectance for the noninvasive determination of tissue optical properties
in vivo", Med. Phys. 19(4), 879-888 (1992).
S. L. Jacques, "Optical properties of biological tissues: a review", Phys. Med. Biol. 58,
R37-R61 (2013).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal


@dataclass(frozen=True)
class Tissue:
    """Optical properties of a homogeneous tissue (per mm) at the emission wavelength.

    Examples
    --------
    >>> t = Tissue(mua_per_mm=0.02, musp_per_mm=1.0)
    >>> round(t.mu_eff, 4), round(t.zb_mm, 3)
    (0.2474, 2.125)
    """

    mua_per_mm: float = 0.02
    musp_per_mm: float = 1.0
    n: float = 1.4
    g: float = 0.9

    def __post_init__(self) -> None:
        if not (self.mua_per_mm > 0 and self.musp_per_mm > 0 and self.n >= 1 and 0 <= self.g < 1):
            raise ValueError(f"need mua > 0, musp > 0, n >= 1, 0 <= g < 1; got {self}")

    @property
    def mu_eff(self) -> float:
        """Effective attenuation ``sqrt(3 mu_a (mu_a + mu_s'))`` (1/mm)."""
        return float(np.sqrt(3 * self.mua_per_mm * (self.mua_per_mm + self.musp_per_mm)))

    @property
    def transport_mfp_mm(self) -> float:
        """Transport mean free path ``1 / (mu_a + mu_s')`` (mm)."""
        return 1.0 / (self.mua_per_mm + self.musp_per_mm)

    @property
    def zb_mm(self) -> float:
        """Extrapolated-boundary distance ``2 A D`` (mm)."""
        n = self.n
        r_id = -1.440 / n**2 + 0.710 / n + 0.668 + 0.0636 * n
        a = (1 + r_id) / (1 - r_id)
        return 2 * a * self.transport_mfp_mm / 3


def diffuse_reflectance(rho_mm, depth_mm: float, tissue: Tissue) -> np.ndarray:
    """Surface flux (1/mm²) at lateral distance ``rho_mm`` from a unit isotropic source at ``depth_mm``.

    Farrell et al. (1992), eq. 2, with the source at ``max(depth, 1/mu_t')`` (see the module
    docstring).

    Examples
    --------
    >>> float(diffuse_reflectance(0.0, 2.0, Tissue()).round(5))
    0.01924
    """
    z = max(float(depth_mm), tissue.transport_mfp_mm)
    rho2 = np.square(np.asarray(rho_mm, float))
    mu = tissue.mu_eff
    out = np.zeros_like(rho2)
    for zz in (z, z + 2 * tissue.zb_mm):  # real source and image source
        r = np.sqrt(zz * zz + rho2)
        out += zz * (mu + 1 / r) * np.exp(-mu * r) / (r * r)
    return out / (4 * np.pi)


def total_diffuse_reflectance(depth_mm: float, tissue: Tissue) -> float:
    """Integral of :func:`diffuse_reflectance` over the surface: ``(e^{-mu z} + e^{-mu (z + 2 z_b)}) / 2``."""
    z = max(float(depth_mm), tissue.transport_mfp_mm)
    mu = tissue.mu_eff
    return 0.5 * (np.exp(-mu * z) + np.exp(-mu * (z + 2 * tissue.zb_mm)))


def excitation_fraction(depth_mm: float, tissue: Tissue) -> float:
    """Broad-beam excitation fluence at depth relative to the surface: ``exp(-mu_eff z)``."""
    return float(np.exp(-tissue.mu_eff * max(float(depth_mm), 0.0)))


def ballistic_fraction(depth_mm: float, tissue: Tissue) -> float:
    """Unscattered fraction ``exp(-(mu_s + mu_a) z)``, ``mu_s = mu_s' / (1 - g)``."""
    mus = tissue.musp_per_mm / (1 - tissue.g)
    return float(np.exp(-(mus + tissue.mua_per_mm) * max(float(depth_mm), 0.0)))


def _disc(diameter_um: float, pixel_um: float) -> np.ndarray:
    """Projected thickness of a sphere (peak 1) on an odd pixel grid centred on the middle pixel."""
    half = int(np.ceil(diameter_um / 2 / pixel_um)) + 1
    u = np.arange(-half, half + 1) * pixel_um
    rho2 = u[:, None] ** 2 + u[None, :] ** 2
    return np.sqrt(np.clip((diameter_um / 2) ** 2 - rho2, 0, None)) / (diameter_um / 2)


def surface_image(shape_xy: tuple[int, int], pixel_um: float, centre_um, diameter_um: float,
                  depth_mm: float, tissue: Tissue, sharp_blur_um: float = 5.0) -> np.ndarray:
    """Camera image ``[x, y]`` of one sphere at ``depth_mm``, for a peak of 1 at the surface.

    A sphere at the surface images as its projected thickness (peak 1, blurred by
    ``sharp_blur_um``); its emitted power is ``2 S`` (``S`` the sum of that image: half of an
    isotropic emitter leaves upwards). Buried, the image is
    ``exc(z) [T_b sharp + 2 S (1 - T_b) (disc * R(z)) dA]`` with the pixel area ``dA``
    (:func:`excitation_fraction`, :func:`ballistic_fraction`, :func:`diffuse_reflectance`).

    Parameters
    ----------
    shape_xy : (int, int)
        Camera pixels along x and y.
    pixel_um : float
        Pixel size (µm), pixel centres at ``index * pixel_um``.
    centre_um : (float, float)
        Particle centre (µm) in the camera frame.
    diameter_um, depth_mm : float
        Sphere diameter (µm) and depth of its centre below the surface (mm).
    tissue : Tissue
    sharp_blur_um : float
        Gaussian sigma (µm) of the optics for the unscattered image.

    Returns
    -------
    ndarray, shape ``shape_xy``

    Examples
    --------
    >>> img = surface_image((200, 200), 10.0, (1000.0, 1000.0), 200.0, 2.0, Tissue())
    >>> bool(img.argmax() == np.ravel_multi_index((100, 100), (200, 200))), bool(img.max() < 1e-3)
    (True, True)
    """
    disc = _disc(diameter_um, pixel_um)
    s_total = float(disc.sum())
    exc, t_b = excitation_fraction(depth_mm, tissue), ballistic_fraction(depth_mm, tissue)
    x = np.arange(shape_xy[0]) * pixel_um - centre_um[0]
    y = np.arange(shape_xy[1]) * pixel_um - centre_um[1]
    rho_mm = np.hypot(x[:, None], y[None, :]) / 1000.0
    kernel = diffuse_reflectance(rho_mm, depth_mm, tissue) * (pixel_um / 1000.0) ** 2
    diffuse = signal.fftconvolve(kernel, disc / s_total, mode="same")
    out = 2 * s_total * (1 - t_b) * np.clip(diffuse, 0, None)
    if t_b > 1e-9:
        out += t_b * _sharp(shape_xy, pixel_um, centre_um, diameter_um, sharp_blur_um)
    return exc * out


def _sharp(shape_xy, pixel_um, centre_um, diameter_um, blur_um) -> np.ndarray:
    """The unscattered image: projected sphere thickness (peak 1 before the blur) blurred by the optics."""
    x = np.arange(shape_xy[0]) * pixel_um - centre_um[0]
    y = np.arange(shape_xy[1]) * pixel_um - centre_um[1]
    rho2 = x[:, None] ** 2 + y[None, :] ** 2
    thick = np.sqrt(np.clip((diameter_um / 2) ** 2 - rho2, 0, None)) / (diameter_um / 2)
    peak = thick.max()
    blurred = ndimage.gaussian_filter(thick, blur_um / pixel_um, mode="constant")
    return blurred / blurred.max() * peak if blurred.max() > 0 else blurred
