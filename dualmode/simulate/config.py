"""Every knob of the folder simulator (:class:`SimulationConfig`) and the MRI grid it implies."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    acceleration: float = field(default=20.0, metadata={"help": "--trajectory planned: full grid / samples (check samples included)", "unit": ""})
    plan_registration_error_voxels: float = field(default=0.25, metadata={"help": "--trajectory planned: in-plane error of the registration the plan is made with", "unit": "voxel"})
    kspace_model: str = field(default="analytic", metadata={"help": "particles' k-space: 'analytic' (exact Fourier transform at every sample) or 'grid' (FFT of the rendered truth: the inverse crime, for comparison)", "unit": ""})
    dwell_us: float = field(default=40.0, metadata={"help": "readout dwell per Cartesian sample (1 ppm of 13C at 7 T then moves a 64-point image by 0.19 voxel)", "unit": "us"})
    dead_time_ms: float = field(default=0.1, metadata={"help": "excitation to first sample (the encoding time of single-point imaging)", "unit": "ms"})
    t2star_ms: float | None = field(default=None, metadata={"help": "T2* decay along the readout (None: no decay)", "unit": "ms"})
    off_resonance_hz: float = field(default=0.0, metadata={"help": "frequency offset of the 13C signal (1 ppm at 7 T = 75.5 Hz)", "unit": "Hz"})
    motion_um: float = field(default=0.0, metadata={"help": "rms rigid displacement of the sample per axis between shots (relative to shot 0)", "unit": "um"})
    background_jitter: float = field(default=0.0, metadata={"help": "relative complex change of the background between shots (rms)", "unit": ""})
    clusters: int = field(default=0, metadata={"help": "number of particles that are clusters of 2-4 touching spheres", "unit": ""})
    ellipsoid_aspect: float = field(default=1.0, metadata={"help": "aspect ratio of every other particle (prolate ellipsoid, same volume; 1: spheres)", "unit": ""})
    # optics
    optical_field_mm: float = 5.0
    optical_pixel_um: float = 10.0
    optical_z_step_um: float = 50.0
    optical_z_slices: int = 20
    rotation_deg: float = 0.0
    mirror: bool = False
    optical_rotation: str = field(default="none", metadata={"help": "camera frame in MRI RAS: extrinsic x,y,z Euler angles 'a,b,c' or 'random' (uniform over all rotations; a 2D MRI: about z only); 'none': rotation_deg about z", "unit": "deg"})
    stack_direction: str = field(default="into", metadata={"help": "z-stack index runs 'into' the sample (along the viewing direction) or 'out' of it (towards the objective)", "unit": ""})
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
