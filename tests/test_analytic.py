"""The analytic particle k-space against brute-force integrals, and the physics it carries."""

import nibabel as nib
import numpy as np
import pytest

from dualmode.io import load_acquisition
from dualmode.simulate import SimulationConfig, simulate_folder
from dualmode.simulate.analytic import Bodies, make_bodies, render_bodies, spectrum


def _brute_force_ft(centre, semi_axes, rot, k, n=160):
    """Riemann sum of exp(-2 pi i k.x) over the inside of an ellipsoid (no closed form used)."""
    reach = max(semi_axes)
    ax = np.linspace(-reach, reach, n, endpoint=False) + reach / n
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.sum((g @ rot / semi_axes) ** 2, axis=1) <= 1
    pts = g[inside] + centre
    dv = (2 * reach / n) ** 3
    return np.array([np.sum(np.exp(-2j * np.pi * pts @ kk)) * dv for kk in k])


@pytest.mark.parametrize("semi_axes,angle", [((0.1, 0.1, 0.1), 0.0), ((0.16, 0.07, 0.05), 0.7)])
def test_sphere_and_ellipsoid_spectrum_equals_the_integral(semi_axes, angle):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    centre = np.array([0.3, -0.2, 0.05])
    bodies = Bodies(centre[None], np.array([semi_axes]), rot[None], np.ones(1), np.zeros(1, int))
    k = np.array([[0, 0, 0], [1.0, 0, 0], [2.5, 1.5, 0], [-3.0, 2.0, 1.0], [0, 4.0, -2.0]])
    exact = spectrum(bodies, k)
    brute = _brute_force_ft(centre, np.array(semi_axes), rot, k)
    np.testing.assert_allclose(exact, brute, atol=0.01 * abs(brute[0]))


def test_k_zero_sample_is_the_rendered_volume_and_clusters_conserve_it():
    rng = np.random.default_rng(0)
    aff = np.diag([0.2, 0.2, 0.2, 1.0])
    aff[:3, 3] = -3.2
    centres = np.array([[0.1, 0.2, 0.0], [-1.0, 0.5, 0.3], [1.2, -1.1, -0.4]])
    diam = np.array([250.0, 180.0, 300.0])
    bodies = make_bodies(rng, centres, diam, np.ones(3), clusters=1, aspect=2.0)
    assert np.sum(bodies.particle == 0) >= 2  # the first is a cluster
    np.testing.assert_allclose(bodies.particle_volume(3), np.pi * (diam / 1000) ** 3 / 6, rtol=1e-12)
    img = render_bodies(bodies, aff, (32, 32, 32), ss=16)
    dc = spectrum(bodies, np.zeros((1, 3)))[0].real / 0.2**3
    assert img.sum() == pytest.approx(dc, rel=0.02)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("phys")
    base = dict(seed=5, amplitude_asymmetry=0.0, phase_difference_deg=0.0, shot_decay=1.0, snr=1e4,
                background_ratio=0.0, n_particles=6, particles_outside_optics=0)
    out = {}
    for name, extra in {"ref": {}, "offres": {"off_resonance_hz": 75.47 * 4},
                        "motion": {"motion_um": 100.0}, "t2": {"t2star_ms": 1.0}}.items():
        folder = root / name
        truth = simulate_folder(folder, SimulationConfig(**base, **extra))
        truth["folder"] = str(folder)
        out[name] = (load_acquisition(folder), truth)
    return out


def _image(acq, shot=0):
    from numpy.fft import fftshift, ifftn, ifftshift

    return fftshift(ifftn(ifftshift(acq.kspace.data[shot, 0])))


def _shift(a, b):
    from skimage.registration import phase_cross_correlation

    # complex images (magnitudes alias and bias sub-voxel shifts); the sign of a shot does not matter
    return phase_cross_correlation(a[..., 0], b[..., 0], upsample_factor=100)[0]


def test_off_resonance_moves_the_image_along_the_readout(folders):
    acq, truth = folders["offres"]
    ref, _ = folders["ref"]
    expected = truth["off_resonance_shift_voxels"]
    assert expected == pytest.approx(4 * 75.47 * 64 * 40e-6)
    shift = _shift(_image(acq), _image(ref))  # shift carrying ref onto offres: the displacement
    assert shift[0] == pytest.approx(expected, abs=0.02) and abs(shift[1]) < 0.02


def test_motion_between_shots_is_the_recorded_displacement(folders):
    acq, truth = folders["motion"]
    disp = np.array(truth["shot_displacement_mm"])
    assert np.all(disp[0] == 0) and np.all(np.abs(disp[1:, :2]) > 0) and np.all(disp[:, 2] == 0)
    for k in (1, 2):
        shift = _shift(_image(acq, k), _image(acq, 0))
        np.testing.assert_allclose(shift, disp[k, :2] / 0.2, atol=0.02)


def test_t2star_decays_along_the_readout_with_the_sample_times(folders):
    acq, _ = folders["t2"]
    ref, _ = folders["ref"]
    kx = np.arange(-8, 9)
    line = (slice(32 - 8, 32 + 9), 32, 0)  # the k_y = 0 line near the centre, strong signal
    ratio = np.abs(acq.kspace.data[0, 0][line] / ref.kspace.data[0, 0][line])
    slope = np.polyfit(kx, np.log(ratio), 1)[0]
    assert slope == pytest.approx(-0.040 / 1.0, rel=0.05)  # -dwell / T2* per k_x step (ms / ms)
    assert ratio[8] == pytest.approx(1.0, abs=0.01)  # normalised at the k = 0 sample


def test_amplitude_is_the_integral_of_the_truth_image(folders):
    acq, truth = folders["ref"]
    amp = np.array([p["amplitude"] for p in truth["particles"]])
    assert np.all(amp > 0)
    h = nib.load(f"{truth['folder']}/truth/c13.nii.gz").get_fdata()
    assert h.sum() == pytest.approx(amp.sum(), rel=0.01)  # partial volume by super-sampling
    k0 = tuple(n // 2 for n in acq.kspace.header.matrix)
    # the k = 0 sample of the +1 shot is the total signal (RF weight 1 at the centre line)
    assert abs(acq.kspace.data[0, 0][k0]) == pytest.approx(amp.sum(), rel=0.01)


@pytest.mark.parametrize("trajectory", ["spi", "centre-out"])
def test_solid_state_trajectories_write_readable_folders(tmp_path, trajectory):
    simulate_folder(tmp_path / "s", SimulationConfig(seed=2, trajectory=trajectory, matrix=32, n_particles=4,
                                                     particles_outside_optics=0))
    acq = load_acquisition(tmp_path / "s")
    coords = acq.kspace.coords
    if trajectory == "spi":
        assert acq.kspace.header.extra["readout_length"] == 1 and len(coords) == 32 * 32
        assert np.all(coords == np.round(coords)) and len({tuple(c) for c in coords}) == 32 * 32
        r = np.hypot(coords[:, 0], coords[:, 1])
        assert np.all(np.diff(r) >= -1e-9)  # centric: RF depletion follows the point order
    else:
        n_read = acq.kspace.header.extra["readout_length"]
        assert np.all(coords.reshape(-1, n_read, 3)[:, 0] == 0)  # every spoke starts at k = 0
