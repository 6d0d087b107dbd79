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
    if cfg.scattering == "diffusion":
        _render_diffuse(cfg, nv, spacing, pts_um, diam_um, depth_mm, bright)
    else:
        _render_mild(nv, spacing, pts_um, diam_um, depth_mm, bright)
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    auto = cfg.autofluorescence * cfg.photons * tissue_fn(grid)
    return nv, auto, spacing


def _render_diffuse(cfg, nv, spacing, pts_um, diam_um, depth_mm, bright) -> None:
    """Add each particle's camera image through diffusive tissue (:func:`.scattering.surface_image`)."""
    from .scattering import Tissue, surface_image

    if nv.shape[2] != 1:
        raise ValueError("scattering='diffusion' models one camera image of the surface: use ndim=2 or widefield")
    tissue = Tissue(mua_per_mm=cfg.tissue_mua_per_mm, musp_per_mm=cfg.tissue_musp_per_mm)
    for p, d, depth, b0 in zip(pts_um, diam_um, depth_mm, bright):
        if b0 > 0:
            nv[..., 0] += b0 * surface_image(nv.shape[:2], spacing[0], p[:2], d, depth, tissue)


def _render_mild(nv, spacing, pts_um, diam_um, depth_mm, bright) -> None:
    """Add each particle as a sphere blurred by ``5 µm + 0.12 mm`` per mm of depth, attenuated ``exp(-depth / 0.8 mm)``."""
    shape = nv.shape
    nz = shape[2]
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


def _camera(rng, cfg, expected):
    return (rng.poisson(np.clip(expected, 0, None)) + rng.normal(0, cfg.read_noise, expected.shape)).astype(np.float32)


def bleach_time_frames(cfg) -> float:
    """1/e photobleaching time of the autofluorescence in frames (default ``10 x optical_frames``)."""
    tau = cfg.autofluorescence_bleach_frames
    return float(tau) if tau is not None else 10.0 * cfg.optical_frames


def modulated_frames(cfg, rng, nv, auto) -> tuple[np.ndarray, np.ndarray]:
    """Camera frames under microwave on/off modulation; returns ``(frames (t, x, y, z), states (t,))``.

    Frame ``t`` (state ``s_t`` alternating 0, 1, ...) expects
    ``A exp(-t / tau) + N (1 - epsilon (1 - s_t))``: the NV image ``N`` is photostable and
    dimmed by the ODMR contrast ``epsilon = modulation_contrast`` in the off state; the tissue
    autofluorescence ``A`` photobleaches with the time constant ``tau`` (:func:`bleach_time_frames`).
    Poisson photon noise plus Gaussian read noise (:func:`_camera`).
    """
    states = np.arange(cfg.optical_frames) % 2
    bleach = np.exp(-np.arange(cfg.optical_frames) / bleach_time_frames(cfg))
    frames = np.stack([
        _camera(rng, cfg, auto * bl + nv * (1 - cfg.modulation_contrast * (1 - st)))
        for st, bl in zip(states, bleach)])
    return frames, states


def _inside(p_um, n_xy, spacing, cfg) -> bool:
    lim = (n_xy - 1) * spacing[0]
    ok = 0 <= p_um[0] <= lim and 0 <= p_um[1] <= lim
    if cfg.ndim == 3 and not cfg.widefield:
        ok = ok and 0 <= p_um[2] <= (cfg.optical_z_slices - 1) * spacing[2]
    return bool(ok)


def optical_rotation(spec: str, rng: np.random.Generator, *, in_plane_only: bool = False) -> np.ndarray:
    """Rotation of the camera frame in MRI RAS from a ``--optical-rotation`` value.

    ``"random"``: uniform over SO(3) (a random angle about z when ``in_plane_only``, e.g. a 2D
    MRI slice); ``"a,b,c"``: extrinsic x, y, z Euler angles in degrees
    (:meth:`scipy.spatial.transform.Rotation.from_euler` ``"xyz"``).

    Examples
    --------
    >>> import numpy as np
    >>> optical_rotation("0,0,90", np.random.default_rng(0)).round(6).tolist()[0]
    [0.0, -1.0, 0.0]
    """
    from scipy.spatial.transform import Rotation

    text = str(spec).strip().lower()
    if text == "random":
        if in_plane_only:
            return Rotation.from_euler("z", rng.uniform(0, 360), degrees=True).as_matrix()
        return Rotation.random(random_state=rng).as_matrix()
    try:
        angles = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        angles = []
    if len(angles) != 3:
        raise ValueError(f"optical_rotation must be 'random' or three Euler angles 'x,y,z' in degrees, got {spec!r}")
    if in_plane_only and (abs(angles[0]) > 1e-9 or abs(angles[1]) > 1e-9):
        raise ValueError(f"a 2D MRI slice needs the optical axis along the slice normal: "
                         f"only a rotation about z, got optical_rotation={spec!r}")
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def data_rotation(camera: np.ndarray, mirror: bool, stack_direction: str) -> np.ndarray:
    """Optical data axes (columns) in MRI RAS: the camera frame (x, y, viewing direction into
    the sample), a mirrored camera (y flipped), and a stack whose index runs ``"into"`` the
    sample (along the viewing direction) or ``"out"`` of it (towards the objective)."""
    if stack_direction not in ("into", "out"):
        raise ValueError(f"stack_direction must be 'into' or 'out', got {stack_direction!r}")
    flips = np.diag([1.0, -1.0 if mirror else 1.0, -1.0 if stack_direction == "out" else 1.0])
    return np.asarray(camera, float) @ flips


def rotated_frame(cfg, rng, fov) -> dict:
    """``optical_to_mri`` of a camera in any orientation (``cfg.optical_rotation``), the field
    near the MRI centre; ``depth_mm(pts_um)`` gives a particle's depth below the surface."""
    if cfg.optical_rotation == "none":
        from .phantom import rotation_z

        cam = rotation_z(cfg.rotation_deg)
    else:
        cam = optical_rotation(cfg.optical_rotation, rng, in_plane_only=cfg.ndim == 2)
    nz = 1 if cfg.ndim == 2 or cfg.widefield else cfg.optical_z_slices
    n_xy = int(round(cfg.optical_field_mm * 1000 / cfg.optical_pixel_um))
    direction = cfg.stack_direction if nz > 1 else "into"
    rot = data_rotation(cam, cfg.mirror, direction)
    depth_mid = 0.0 if cfg.ndim == 2 else 0.5 * min(cfg.depth_mm, nz * cfg.optical_z_step_um / 1000)
    surface = np.r_[rng.uniform(-1.0, 1.0, 2), 0.0] - cam[:, 2] * depth_mid
    centre_um = np.array([(n_xy - 1) / 2 * cfg.optical_pixel_um] * 2 + [0.0])
    if direction == "out":
        centre_um[2] = (nz - 1) * cfg.optical_z_step_um  # the surface is the last plane
    o2m = np.eye(4)
    o2m[:3, :3] = rot * 1e-3
    o2m[:3, 3] = surface - rot @ centre_um * 1e-3
    top = (nz - 1) * cfg.optical_z_step_um

    def depth_mm(pts_um):
        z = pts_um[:, 2] if direction == "into" else top - pts_um[:, 2]
        return np.clip(z / 1000.0, 0, None)

    return {"field_centre": surface, "n_xy": n_xy, "optical_to_mri": o2m, "camera": cam,
            "depth_mm": depth_mm, "rotated": True}


def place_in_camera_frame(cfg, rng, frame, fov):
    """Particle centres (MRI mm) and diameters for a rotated camera: most inside the optical
    field below the surface (camera coordinates), the rest elsewhere in the MRI field."""
    cam, surface = frame["camera"], frame["field_centre"]
    n_in = cfg.n_particles - cfg.particles_outside_optics
    half = cfg.optical_field_mm / 2 - 0.2
    depth_range = cfg.depth_mm if cfg.widefield else min(
        cfg.depth_mm, cfg.optical_z_slices * cfg.optical_z_step_um / 1000 - 0.2)
    lim = np.array(fov) / 2 - np.array([0.6, 0.6, 0.3 if cfg.ndim == 3 else 0.0])
    pts, diam = [], []
    for _ in range(40000):
        if len(pts) >= cfg.n_particles:
            break
        inside = len(pts) < n_in
        if inside:
            uvw = np.r_[rng.uniform(-half, half, 2), rng.uniform(0.1, max(depth_range, 0.15))]
        else:
            uvw = np.r_[rng.uniform(-2 * half, 2 * half, 2), rng.uniform(0.1, max(depth_range, 0.15))]
            if np.all(np.abs(uvw[:2]) < cfg.optical_field_mm / 2 + 0.3):
                continue
        if cfg.ndim == 2:
            uvw[2] = 0.0
        p = surface + cam @ uvw
        if np.any(np.abs(p) > lim) or (pts and np.min(np.linalg.norm(np.array(pts) - p, axis=1)) < 0.6):
            continue
        pts.append(p)
        diam.append(rng.uniform(*cfg.diameter_um))
    return np.array(pts), np.array(diam)


def placement_center(cfg, rng, frame) -> np.ndarray:
    """The manifest's ``placement.center_mm``: the RAS position of the optical data's centre
    (middle pixel of the field; a stack: the middle of the stack) plus an in-plane error of
    ``cfg.placement_error_mm`` (rms per axis)."""
    nz = 1 if cfg.ndim == 2 or cfg.widefield else cfg.optical_z_slices
    n_xy = frame["n_xy"]
    mid = np.array([(n_xy - 1) / 2 * cfg.optical_pixel_um] * 2 + [(nz - 1) / 2 * cfg.optical_z_step_um])
    o2m = frame["optical_to_mri"]
    centre = o2m[:3, :3] @ mid + o2m[:3, 3]
    return centre + np.r_[rng.normal(0, cfg.placement_error_mm, 2), 0.0]
