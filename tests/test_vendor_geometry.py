"""Vendor geometry in RAS: the real ParaVision 5.1 tripilot against the scanner's own 2dseq
and visu_pars (read by brukerapi, an independent reader), and synthetic oblique Bruker,
Varian and twix acquisitions written with known geometry and read back without a manifest."""

from pathlib import Path

import numpy as np
import pytest

from dualmode.conventions import fft_centered, ifft_centered, mri_affine
from dualmode.io import InputError, KSpace, KSpaceHeader, read_kspace
from dualmode.io.bruker import read_bruker

# committed copy (Apache-2.0, tests/data/bruker-flash-pv51/LICENSE) of shared/realdata/bruker-flash-pv51
TRIPILOT = Path(__file__).resolve().parent / "data" / "bruker-flash-pv51" / "100"
needs_tripilot = pytest.mark.skipif(not TRIPILOT.is_dir(), reason=f"tripilot data absent: {TRIPILOT}")
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@needs_tripilot
def test_tripilot_refuses_without_a_package():
    with pytest.raises(InputError, match="3 slice packages") as err:
        read_kspace(TRIPILOT)
    assert err.value.field == "package"


@needs_tripilot
def test_tripilot_kspace_equals_brukerapi():
    from brukerapi.dataset import Dataset

    ref = Dataset(str(TRIPILOT / "fid")).data  # (read, phase, object, rep, coil)
    for k in range(3):
        got = read_kspace(TRIPILOT, package=k).data[0, 0, :, :, 0]
        np.testing.assert_array_equal(got, ref[:, :, k, 0, 0].astype(np.complex64))


@needs_tripilot
def test_tripilot_images_and_voxel_positions_equal_the_scanner_reconstruction():
    """Each voxel of dualmode's image lands, by dualmode's affine, on the 2dseq voxel that
    visu_pars (via brukerapi's affine) places at the same point, within 0.01 mm, and there
    holds the same value after one global scale, within 1 unit of the 16-bit scale."""
    from brukerapi.dataset import Dataset

    seq = Dataset(str(TRIPILOT / "pdata" / "1" / "2dseq"))
    raw = np.fromfile(TRIPILOT / "pdata" / "1" / "2dseq", "<i2").reshape(3, 128, 128)  # frame, slow, fast
    mine, theirs = [], []
    for k in range(3):
        ksp = read_bruker(TRIPILOT, package=k)
        img = np.abs(ifft_centered(ksp.data[0, 0]))[..., 0]
        aff_visu = RAS_FROM_LPS @ seq.affine_of_package(k)
        ijk = np.stack(np.meshgrid(np.arange(128), np.arange(128), [0], indexing="ij"), -1).reshape(-1, 3)
        world = ijk @ ksp.header.affine()[:3, :3].T + ksp.header.affine()[:3, 3]
        idx = (world - aff_visu[:3, 3]) @ np.linalg.inv(aff_visu[:3, :3]).T
        near = np.round(idx)
        err_mm = np.linalg.norm((idx - near) @ aff_visu[:3, :3].T, axis=1)
        assert err_mm.max() < 0.01 and near.min() >= 0 and near[:, :2].max() <= 127 and np.all(near[:, 2] == 0)
        near = near.astype(int)
        mine.append(img.ravel())
        theirs.append(raw[k][near[:, 1], near[:, 0]].astype(float))  # 2dseq: fast axis = visu axis 0
    mine, theirs = np.concatenate(mine), np.concatenate(theirs)
    scale = mine @ theirs / (mine @ mine)
    assert np.abs(mine * scale - theirs).max() <= 1.0
    assert np.corrcoef(mine, theirs)[0, 1] > 0.99999


@needs_tripilot
def test_tripilot_geometry_agrees_with_visu_pars_inside_the_reader():
    for k in range(3):
        h = read_bruker(TRIPILOT, package=k).header
        assert h.extra["visu_pars_mismatch_mm"] < 0.01 and "geometry_warning" not in h.extra
        assert h.extra["geometry_source"].startswith("method")


def _rotation(ax, ay, az):
    """Proper rotation from angles (deg) about x, y, z, written out here (not the readers' code)."""
    a, b, c = np.deg2rad([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _oblique_kspace(matrix, fov, reps=2, coils=1, seed=0, slices=False):
    """k-space of a point phantom at known voxels (slice stack: 2D DFT per slice, stored as the
    reader returns it) with an oblique RAS placement."""
    rng = np.random.default_rng(seed)
    img = np.zeros(matrix, np.complex64)
    pts = [tuple(rng.integers(0, m) for m in matrix) for _ in range(3)]
    for p in pts:
        img[p] = 1.0 + rng.random()
    k = fft_centered(img)  # a slice stack is the same: its third axis holds the DFT of the slices
    data = np.broadcast_to(k, (reps, coils, *matrix)).astype(np.complex64).copy()
    h = KSpaceHeader(matrix=matrix, fov_mm=fov, position_mm=(4.25, -7.5, 12.0),
                     orientation=_rotation(20, -35, 50), n_repetitions=reps, n_coils=coils,
                     flip_angle_deg=10.0, tr_ms=5.0, te_ms=1.0, nucleus="13C", frequency_hz=75.4e6)
    return KSpace(data, h), pts


@pytest.mark.parametrize("patient_pos", ["Head_Supine", "Head_Prone", "Foot_Supine", "Foot_Prone"])
@pytest.mark.parametrize("method_geometry", [True, False])
def test_bruker_oblique_slice_stack_round_trip(tmp_path, patient_pos, method_geometry):
    from dualmode.simulate import write_bruker

    ksp, pts = _oblique_kspace((16, 12, 5), (32.0, 24.0, 7.5), slices=True)
    write_bruker(tmp_path, ksp, "GO_32BIT_FLOAT", slices=True, patient_pos=patient_pos,
                 method_geometry=method_geometry)
    got = read_kspace(tmp_path)
    h = got.header
    assert h.matrix == (16, 12, 5) and h.extra["slice_stack"] and h.extra["slice_spacing_mm"] == pytest.approx(1.5)
    want = mri_affine(ksp.header.matrix, ksp.header.fov_mm, ksp.header.position_mm, ksp.header.orientation)
    np.testing.assert_allclose(h.affine(), want, atol=1e-5)
    img = np.abs(ifft_centered(got.data[0, 0]))
    found = {tuple(int(v) for v in np.unravel_index(i, img.shape)) for i in np.argsort(img.ravel())[-3:]}
    assert found == set(pts)
    assert ("method" if method_geometry else "acqp") in h.extra["geometry_source"]
    # per-slice excitation order: every slice restarts the phase-encode loop
    np.testing.assert_array_equal(h.line_order[:, 0], h.line_order[:, 4])


def test_bruker_oblique_3d_round_trip(tmp_path):
    from dualmode.simulate import write_bruker

    ksp, pts = _oblique_kspace((12, 10, 8), (24.0, 20.0, 16.0))
    write_bruker(tmp_path, ksp, "GO_32BIT_FLOAT")
    h = read_kspace(tmp_path).header
    np.testing.assert_allclose(h.affine(), ksp.header.affine(), atol=1e-5)
    assert "slice_stack" not in h.extra


def test_bruker_unmodelled_patient_position_says_so(tmp_path):
    from dualmode.simulate import write_bruker

    ksp, _ = _oblique_kspace((8, 6, 1), (16.0, 12.0, 2.0))
    write_bruker(tmp_path, ksp, "GO_32BIT_FLOAT")
    text = (tmp_path / "acqp").read_text().replace("Head_Supine", "Head_Left")
    (tmp_path / "acqp").write_text(text)
    h = read_kspace(tmp_path).header
    assert h.extra["geometry_source"].startswith("none") and "mri.geometry" in h.extra["geometry_source"]
    np.testing.assert_array_equal(h.orientation, np.eye(3))


@pytest.mark.parametrize("matrix,fov", [((16, 12, 1), (32.0, 24.0, 2.0)), ((12, 10, 8), (24.0, 20.0, 16.0))])
def test_varian_oblique_round_trip(tmp_path, matrix, fov):
    from dualmode.simulate import write_varian

    ksp, pts = _oblique_kspace(matrix, fov)
    write_varian(tmp_path / "img.fid", ksp)
    got = read_kspace(tmp_path / "img.fid")
    np.testing.assert_allclose(got.header.affine(), ksp.header.affine(), atol=1e-5)
    assert got.header.extra["geometry_source"].startswith("procpar")
    np.testing.assert_allclose(got.data, ksp.data, rtol=1e-5, atol=1e-5)


def test_varian_euler_convention_axial_is_minus_x_minus_y():
    """psi = phi = theta = 0 is an axial slice with read along magnet -x and phase along -y
    (the rows VnmrJ writes into fdf headers for a plain transverse scan)."""
    from dualmode.io.varian import euler_rows

    np.testing.assert_allclose(euler_rows(0, 0, 0), np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    # theta = 90 tilts the slice normal into the x-y plane
    assert abs(euler_rows(0, 0, 90)[2, 2]) < 1e-12


def test_twix_oblique_round_trip_affine(tmp_path):
    from dualmode.simulate import write_twix

    ksp, _ = _oblique_kspace((16, 12, 1), (32.0, 24.0, 3.0), coils=2)
    write_twix(tmp_path / "meas.dat", ksp)
    got = read_kspace(tmp_path / "meas.dat")
    np.testing.assert_allclose(got.header.affine(), ksp.header.affine(), atol=1e-4)
    assert got.header.extra["geometry_source"].startswith("MDH SliceData")


@needs_tripilot
def test_tripilot_packages_listed_for_dualmode_info():
    from dualmode.importer import describe_packages

    pkgs = describe_packages(TRIPILOT)
    assert [p["slices"] for p in pkgs] == [1, 1, 1]
    normals = np.abs(np.array([p["normal_ras"] for p in pkgs]))
    np.testing.assert_allclose(normals, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])  # axial, sagittal, coronal
