"""Every knob of the folder simulator (:class:`SimulationConfig`) and the MRI grid it implies."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

C13_FREQUENCY_7T_HZ = 75.47e6
#: trajectories of :mod:`.sampling` and the optics-guided plan (listed here to keep this module light for the
#: command-line parser; a test keeps them equal)
TRAJECTORIES = ("cartesian", "radial", "centre-out", "spiral", "spi", "planned")


def knob(default, help: str, unit: str = "", *, choices: tuple | None = None, gt=None, ge=None, lt=None,
         le=None, none: str | None = None):
    """A :class:`SimulationConfig` field with its help text, unit and allowed values.

    ``dualmode simulate --help`` shows ``help`` and ``unit``; the flag's type refuses
    values outside ``choices`` / the bounds (``gt`` >, ``ge`` >=, ``lt`` <, ``le`` <=), and
    so does :class:`SimulationConfig` itself; ``none`` says what a ``None`` default means.
    Add new fields the same way.
    """
    meta = {"help": help, "unit": unit, "choices": choices, "gt": gt, "ge": ge, "lt": lt, "le": le, "none": none}
    return field(default=default, metadata=meta)


def check_value(name: str, value, meta) -> None:
    """Raise ``ValueError`` naming the knob when ``value`` breaks its metadata bounds."""
    if value is None or not meta:
        return
    values = value if isinstance(value, tuple) else (value,)
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    for op, bound, ok in (("gt", ">", lambda v, b: v > b), ("ge", ">=", lambda v, b: v >= b),
                          ("lt", "<", lambda v, b: v < b), ("le", "<=", lambda v, b: v <= b)):
        b = meta.get(op)
        if b is not None and not all(ok(v, b) for v in values):
            raise ValueError(f"{name} must be {bound} {b}, got {value!r}")


@dataclass
class SimulationConfig:
    """Every knob of the simulator (units in the names). CLI flags mirror these fields."""

    seed: int = knob(0, "random seed: the same seed and knobs give the same folder", ge=0)
    ndim: int = knob(2, "2: one slice and one camera image, 3: a volume and an optical z stack", choices=(2, 3))
    snr: float = knob(20.0, "peak hyperpolarized 13C signal / noise sigma of one shot image", gt=0)
    background_ratio: float = knob(10.0, "peak sign-invariant background / peak hyperpolarized signal", ge=0)
    n_particles: int = knob(12, "diamond particles in the sample", ge=1)
    particles_outside_optics: int = knob(2, "of those, particles outside the optical field (MRI only)", ge=0)
    diameter_um: tuple[float, float] = knob((100.0, 300.0), "range of particle diameters (min max)", "µm", gt=0)
    # MRI
    fov_mm: float = knob(12.8, "MRI field of view in x and y", "mm", gt=0)
    matrix: int = knob(64, "MRI matrix in x and y (3D: half as many slices, at least 8)", ge=8)
    slice_mm: float = knob(1.0, "slice thickness of the 2D MRI", "mm", gt=0)
    scheme: str = knob("+-", "polarization sign block of + and - (e.g. +-, +--+) or alternating, abba, thue-morse")
    n_cycles: int = knob(2, "repetitions of the scheme block (shots = block length x cycles)", ge=1)
    amplitude_asymmetry: float = knob(0.1, "relative amplitude difference between + and - shots", ge=0, lt=2)
    phase_difference_deg: float = knob(20.0, "phase difference between + and - shots", "degrees")
    shot_decay: float = knob(0.97, "fraction of the polarization left from one shot to the next", gt=0, le=1)
    linear_drift: float = knob(0.0, "background drift per shot, as a fraction of the background", ge=0)
    flip_angle_deg: float | None = knob(None, "excitation flip angle", "degrees", gt=0, lt=90,
                                        none="cos(flip)^lines = 0.75 over one shot")
    tr_ms: float = knob(10.0, "repetition time between excitations", "ms", gt=0)
    trajectory: str = knob("cartesian", "k-space trajectory (centre-out: half spokes from k = 0; spi: single-point "
                                        "imaging; spiral: 2D only)", choices=TRAJECTORIES)
    undersample: float = knob(1.0, "k-space undersampling factor (Cartesian: Poisson disc; radial: fewer "
                                   "spokes; spiral: wider gaps)", ge=1)
    acceleration: float = knob(20.0, "--trajectory planned: full grid / samples (check samples included)", ge=1)
    plan_registration_error_voxels: float = knob(0.25, "--trajectory planned: in-plane error of the registration "
                                                       "the plan is made with", "voxels", ge=0)
    kspace_model: str = knob("analytic", "particles' k-space: 'analytic' (exact Fourier transform at every sample) "
                                          "or 'grid' (FFT of the rendered truth: the inverse crime, for comparison)",
                             choices=("analytic", "grid"))
    dwell_us: float = knob(40.0, "readout dwell per Cartesian sample (1 ppm of 13C at 7 T then moves a 64-point "
                                 "image by 0.19 voxel)", "µs", gt=0)
    dead_time_ms: float = knob(0.1, "excitation to first sample (the encoding time of single-point imaging)", "ms",
                               ge=0)
    t2star_ms: float | None = knob(None, "T2* decay along the readout", "ms", gt=0, none="no decay")
    off_resonance_hz: float = knob(0.0, "frequency offset of the 13C signal (1 ppm at 7 T = 75.5 Hz)", "Hz")
    motion_um: float = knob(0.0, "rms rigid displacement of the sample per axis between shots (relative to shot 0)",
                            "µm", ge=0)
    background_jitter: float = knob(0.0, "relative complex change of the background between shots (rms)", ge=0)
    clusters: int = knob(0, "number of particles that are clusters of 2-4 touching spheres", ge=0)
    ellipsoid_aspect: float = knob(1.0, "aspect ratio of every other particle (prolate ellipsoid, same volume; "
                                        "1: spheres)", gt=0)
    # optics
    optical_field_mm: float = knob(5.0, "side of the optical field of view", "mm", gt=0)
    optical_pixel_um: float = knob(10.0, "optical pixel size", "µm", gt=0)
    optical_z_step_um: float = knob(50.0, "z step of the optical stack (3D)", "µm", gt=0)
    optical_z_slices: int = knob(20, "slices of the optical stack (3D)", ge=1)
    rotation_deg: float = knob(0.0, "rotation of the optical frame about z relative to the MRI", "degrees")
    mirror: bool = knob(False, "mirror the optical image (y flipped), as some microscopes do")
    optical_rotation: str = knob("none", "camera frame in MRI RAS: extrinsic x,y,z Euler angles 'a,b,c' or 'random' "
                                         "(uniform over all rotations; a 2D MRI: about z only); 'none': rotation_deg "
                                         "about z", "degrees")
    stack_direction: str = knob("into", "z-stack index runs 'into' the sample (along the viewing direction) or 'out' "
                                        "of it (towards the objective)", choices=("into", "out"))
    widefield: bool = knob(False, "3D: one widefield camera image instead of a z stack")
    outliers: float = knob(0.0, "fraction of in-field particles seen by one modality only", ge=0, le=1)
    depth_mm: float = knob(0.5, "largest particle depth below the tissue surface (blur, attenuation)", "mm", ge=0)
    min_depth_mm: float = knob(0.0, "smallest particle depth (2D; equal to depth_mm: every particle at that depth)",
                               "mm", ge=0)
    scattering: str = knob("mild", "optical scattering of the tissue: 'mild' (Gaussian blur 5 µm + 0.12 mm per mm "
                                   "of depth, attenuation exp(-depth / 0.8 mm)) or 'diffusion' (unscattered core plus "
                                   "the diffusion-theory halo of a buried point source, Farrell et al. 1992; one "
                                   "camera image: 2D or widefield)", choices=("mild", "diffusion"))
    tissue_mua_per_mm: float = knob(0.02, "--scattering diffusion: tissue absorption at the NV emission (~700 nm; "
                                          "soft tissue 0.01-0.05)", "1/mm", gt=0)
    tissue_musp_per_mm: float = knob(1.0, "--scattering diffusion: reduced scattering coefficient at ~700 nm (soft "
                                          "tissue about 1)", "1/mm", gt=0)
    autofluorescence: float = knob(0.3, "tissue autofluorescence relative to a particle's brightness", ge=0)
    photons: float = knob(2000.0, "photons from a particle at its peak (Poisson noise)", "photons", gt=0)
    read_noise: float = knob(5.0, "camera read noise (Gaussian sigma)", "photons", ge=0)
    optical_frames: int = knob(0, "modulated frames (microwave on/off) for the optical lock-in; 0: none", ge=0)
    autofluorescence_bleach_frames: float | None = knob(None, "1/e photobleaching time of the tissue "
                                                              "autofluorescence under the excitation (NV centres are "
                                                              "photostable)", "frames", gt=0,
                                                        none="10 x optical_frames: a tenth lost over the frames")
    modulation_contrast: float = knob(0.1, "fractional NV fluorescence drop in the off state", ge=0, le=1)
    placement_error_mm: float = knob(0.5, "error of the stage reading of the optical field centre", "mm", ge=0)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            check_value(f.name, getattr(self, f.name), f.metadata)
        if self.particles_outside_optics > self.n_particles:
            raise ValueError(f"particles_outside_optics ({self.particles_outside_optics}) must be <= "
                             f"n_particles ({self.n_particles})")
        if self.min_depth_mm > self.depth_mm:
            raise ValueError(f"min_depth_mm ({self.min_depth_mm}) must be <= depth_mm ({self.depth_mm})")
        if self.scattering == "diffusion" and self.ndim == 3 and not self.widefield:
            raise ValueError("scattering='diffusion' models one camera image of the surface: use ndim=2 or widefield")
        if self.optical_frames == 1:
            raise ValueError("optical_frames must be 0 or at least 2 (on and off states)")


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
