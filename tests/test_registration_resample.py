"""resample_optical against analytic images, anti-aliasing, and the .tfm round trip."""

import numpy as np
import pytest
import SimpleITK as sitk

from dualmode.conventions import apply_affine, mri_affine, ras_to_lps
from dualmode.registration import read_tfm, resample_optical, write_tfm
from dualmode.simulate import rotation_z
from dualmode.registration.resample import antialias_sigma, optical_sitk_image
from scipy import ndimage

# oblique MRI: axes i, j, k along -y, +x, +z (RAS), so RAS/LPS and axis-order mistakes show
ORIENT = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _o2m(angle, mirrored, t):
    m = np.eye(4)
    m[:3, :3] = 1e-3 * rotation_z(angle, mirrored)
    m[:3, 3] = t
    return m


def _blob(shape, spacing, centre_um, sigma_um):
    g = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    r2 = sum((gi - c) ** 2 for gi, c in zip(g, centre_um))
    return np.exp(-r2 / (2 * sigma_um**2)).astype(np.float32)


def _centroid_world(img, affine):
    w = np.clip(img - 0.2 * img.max(), 0, None)
    idx = np.indices(img.shape).reshape(3, -1).T
    return apply_affine(affine, (w.ravel()[:, None] * idx).sum(0) / w.sum())


@pytest.mark.parametrize("mirrored", [False, True])
def test_resample_widefield_blob_lands_where_the_transform_says(mirrored):
    spacing = (10.0, 10.0, 50.0)
    centre_um = np.array([1500.0, 900.0, 0.0])
    data = _blob((400, 300, 1), spacing, centre_um, 250.0)
    o2m = _o2m(35.0, mirrored, [1.0, -2.0, 0.3])
    affine = mri_affine((64, 64, 1), (12.8, 12.8, 1.0), (0.0, 0.0, 0.3), ORIENT)
    out = resample_optical(data, spacing, o2m, (64, 64, 1), affine)
    vox = 0.2
    expected = apply_affine(o2m, centre_um)
    assert np.linalg.norm(_centroid_world(out, affine)[:2] - expected[:2]) < 0.05 * vox
    # values: the analytic blob at each voxel centre (a 250 um blob, mildly blurred)
    world = apply_affine(affine, np.indices(out.shape).reshape(3, -1).T)
    o = apply_affine(np.linalg.inv(o2m), world)
    inside = np.all((o[:, :2] > 50) & (o[:, :2] < np.array([3940.0, 2940.0])), axis=1)
    # anti-aliasing blurs the 250 um blob by the Gaussian matched to the 0.2 mm voxel
    blur = antialias_sigma(spacing, o2m, affine)[0] * spacing[0]
    assert 60.0 < blur < 110.0
    s2 = 250.0**2 + blur**2
    ana = 250.0**2 / s2 * np.exp(-((o[:, :2] - centre_um[:2]) ** 2).sum(1) / (2 * s2))
    assert np.max(np.abs(out.ravel()[inside] - ana[inside])) < 0.02
    outside = np.any((o[:, :2] < -20) | (o[:, :2] > np.array([4010.0, 3010.0])), axis=1)
    assert np.all(out.ravel()[outside] == 0)


def test_resample_stack_3d_oblique():
    spacing = (15.0, 15.0, 40.0)
    centre_um = np.array([1200.0, 1800.0, 780.0])
    data = _blob((200, 200, 40), spacing, centre_um, 300.0)
    o2m = _o2m(-60.0, True, [-1.0, 0.5, -0.2])
    affine = mri_affine((40, 40, 40), (10.0, 10.0, 10.0), (0.0, 0.0, 0.0), ORIENT)
    out = resample_optical(data, spacing, o2m, (40, 40, 40), affine)
    expected = apply_affine(o2m, centre_um)
    assert np.linalg.norm(_centroid_world(out, affine) - expected) < 0.05 * 0.25


def test_resample_antialiases_fine_texture():
    spacing = (5.0, 5.0, 50.0)
    yy = np.indices((400, 400))
    checker = ((yy[0] + yy[1]) % 2).astype(np.float32)[:, :, None] * 100.0
    o2m = _o2m(0.0, False, [0.0, 0.0, 0.0])
    # 17 optical pixels per voxel, voxel centres on pixel centres: unblurred samples alternate 0 / 100
    affine = mri_affine((15, 15, 1), (15 * 0.085, 15 * 0.085, 1.0), (1.0, 1.0, 0.0))
    smooth = resample_optical(checker, spacing, o2m, (15, 15, 1), affine)
    raw = resample_optical(checker, spacing, o2m, (15, 15, 1), affine, antialias=False)
    inner = smooth[2:-2, 2:-2]
    assert abs(inner.mean() - 50.0) < 2.0 and inner.std() < 2.0
    assert raw[2:-2, 2:-2].std() > 10 * inner.std()


@pytest.mark.parametrize("shape", [(301, 257, 1), (130, 121, 24)])
def test_binned_antialiasing_matches_the_full_resolution_gaussian(shape):
    """The binned blur (block mean + the rest of the Gaussian) against scipy's Gaussian at full
    resolution sampled by plain ITK: particle-sized blobs agree to 1 % of their peak, and the
    field edge (zero outside, also past a padded last block) is the same voxel for voxel."""
    rng = np.random.default_rng(5)
    spacing = (10.0, 10.0, 50.0) if shape[2] == 1 else (12.0, 12.0, 50.0)
    centres = rng.uniform(0, 1, (25, 3)) * (np.array(shape) - 1) * spacing
    data = 1.0 + sum(_blob(shape, spacing, c, 60.0) for c in centres)
    o2m = _o2m(25.0, shape[2] == 1, [0.3, -0.2, 0.05])
    vox = 0.25
    affine = mri_affine((24, 24, 3), (24 * vox, 24 * vox, 3 * vox), apply_affine(o2m, np.array(shape) * spacing / 2),
                        ORIENT)
    ours = resample_optical(data, spacing, o2m, (24, 24, 3), affine)
    sig = antialias_sigma(spacing, o2m, affine)
    assert sig[0] > 6  # several optical pixels per voxel: the binned path
    sig[np.array(shape) == 1] = 0.0
    blurred = ndimage.gaussian_filter(data, sig, mode="nearest")
    ref = resample_optical(blurred, spacing, o2m, (24, 24, 3), affine, antialias=False)
    assert np.array_equal(ours != 0, ref != 0) and 0 < np.count_nonzero(ref) < ref.size
    peak = ref.max() - 1.0
    px = apply_affine(np.linalg.inv(o2m), apply_affine(affine, np.indices(ref.shape).reshape(3, -1).T)) / spacing
    inner = np.all((np.minimum(px, np.array(shape) - 1 - px) >= 3 * sig) | (np.array(shape) == 1), axis=1)
    inner = inner.reshape(ref.shape) & (ref != 0)
    assert inner.sum() >= 20
    assert np.max(np.abs(ours - ref)[inner]) < 0.01 * peak  # the blur itself
    assert np.max(np.abs(ours - ref)) < 0.03 * peak  # near the edge, both extend the edge pixels


def test_resample_field_edge_is_the_optical_field_edge():
    """Coarse voxels centred just inside / just past the last optical pixel (x = 300 px, edge at
    300.5 px): the binned copy's padded last block must not extend the field."""
    data = np.ones((301, 60, 1), np.float32)
    o2m = _o2m(0.0, False, [0.0, 0.0, 0.0])
    affine = np.diag([0.2, 0.2, 1.0, 1.0])  # 20 optical pixels per voxel: binned
    affine[:3, 3] = [3.0 - 0.2 * 14 + 0.004, 0.3, 0.0]  # voxel 14 at x = 3.004 mm = 300.4 px
    inside = resample_optical(data, (10.0, 10.0, 50.0), o2m, (16, 3, 1), affine)
    assert inside[14, 1, 0] == pytest.approx(1.0) and inside[13, 1, 0] == pytest.approx(1.0)
    affine[0, 3] += 0.006  # voxel 14 at x = 301.0 px: outside the field, inside the padded block
    past = resample_optical(data, (10.0, 10.0, 50.0), o2m, (16, 3, 1), affine)
    assert past[14, 1, 0] == 0.0 and past[13, 1, 0] == pytest.approx(1.0)


def test_tfm_round_trip_and_itk_resampling(tmp_path):
    o2m = _o2m(-110.0, True, [2.0, -1.0, 0.4])
    path = tmp_path / "optical_to_mri.tfm"
    write_tfm(path, o2m)
    assert np.allclose(read_tfm(path), o2m, atol=1e-12)
    tx = sitk.ReadTransform(str(path))
    # fixed (MRI, LPS mm) -> moving (optical um)
    p_um = np.array([1234.0, 567.0, 0.0])
    lps = apply_affine(ras_to_lps(o2m), p_um)
    assert np.allclose(tx.TransformPoint(tuple(lps)), p_um, atol=1e-6)
    # resampling with the file in plain SimpleITK equals resample_optical
    rng = np.random.default_rng(0)
    data = rng.random((50, 40, 6)).astype(np.float32)
    spacing = (20.0, 20.0, 30.0)
    affine = mri_affine((30, 30, 10), (1.2, 1.2, 0.3), apply_affine(o2m, [500.0, 400.0, 80.0]), ORIENT)
    ours = resample_optical(data, spacing, o2m, (30, 30, 10), affine, antialias=False)
    from dualmode.conventions import sitk_geometry

    origin, sp, direction = sitk_geometry(affine)
    ref = sitk.Image([30, 30, 10], sitk.sitkFloat32)
    ref.SetOrigin(origin)
    ref.SetSpacing(sp)
    ref.SetDirection(direction)
    theirs = sitk.Resample(optical_sitk_image(data, spacing), ref, tx, sitk.sitkLinear, 0.0)
    theirs = np.transpose(sitk.GetArrayFromImage(theirs))
    assert np.count_nonzero(ours) > 1000
    assert np.allclose(ours, theirs, atol=1e-6)


def test_resample_rejects_bad_transform():
    with pytest.raises(ValueError, match="invertible"):
        resample_optical(np.ones((4, 4, 1)), (1, 1, 1), np.zeros((4, 4)), (4, 4, 1), np.eye(4))


@pytest.mark.parametrize("shape, sigma", [((260, 140, 12), (4.7, 4.7, 1.5)), ((300, 450, 1), (3.2, 0.0, 0.0)),
                                          ((90, 80, 40), (0.0, 2.0, 6.0))])
def test_two_thread_gaussian_equals_scipy_gaussian_filter(shape, sigma):
    """The halves of each pass are filtered at once; every line is filtered whole: the same values."""
    from dualmode.registration.resample import gaussian_nearest

    image = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    expect = ndimage.gaussian_filter(image, sigma, mode="nearest")
    got = gaussian_nearest(image, sigma, threads=2)
    assert got.dtype == expect.dtype and np.array_equal(got, expect)
    assert np.array_equal(gaussian_nearest(image, sigma, threads=1), expect)


def test_resampling_does_not_depend_on_the_thread_count():
    """The batch pins ITK's global thread count to 1; resampling runs on the folder's threads: same voxels."""
    import scipy.fft

    data = np.random.default_rng(9).random((120, 90, 7)).astype(np.float32)
    o2m = np.eye(4)
    o2m[:3, :3] = rotation_z(17.0) * 1e-3
    aff = mri_affine((40, 30, 6), (2.4, 1.8, 0.4))
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        one = resample_optical(data, (20.0, 20.0, 60.0), o2m, (40, 30, 6), aff)
        with scipy.fft.set_workers(3):
            three = resample_optical(data, (20.0, 20.0, 60.0), o2m, (40, 30, 6), aff)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert one.max() > 0.5 and np.array_equal(one, three)


@pytest.mark.parametrize("sampler", ["scipy", "itk"])
@pytest.mark.parametrize("planes", [1, 6])
def test_both_samplers_equal_plain_simpleitk_with_the_written_tfm(tmp_path, monkeypatch, sampler, planes):
    """SciPy (small grids) and ITK (large grids) sample the optics, a widefield plane (a slab one
    voxel thick) or a stack, as plain SimpleITK does with the written .tfm: same voxels, same edge."""
    from dualmode.conventions import sitk_geometry
    from dualmode.registration import resample

    monkeypatch.setattr(resample, "SCIPY_MAX_VOXELS", 10**9 if sampler == "scipy" else 0)
    o2m = _o2m(-110.0, True, [2.0, -1.0, 0.4])
    write_tfm(tmp_path / "t.tfm", o2m)
    tx = sitk.ReadTransform(str(tmp_path / "t.tfm"))
    expect = np.linalg.inv(ras_to_lps(o2m))
    assert np.array_equal(np.array(tx.GetParameters()), np.r_[expect[:3, :3].ravel(), expect[:3, 3]])
    data = np.random.default_rng(planes).random((50, 40, planes)).astype(np.float32)
    spacing = (20.0, 20.0, 30.0)
    shape = (30, 30, 10 if planes > 1 else 1)
    affine = mri_affine(shape, (1.2, 1.2, 0.3 * shape[2]), apply_affine(o2m, [500.0, 400.0, 80.0 * (planes > 1)]),
                        ORIENT)
    ours = resample_optical(data, spacing, o2m, shape, affine, antialias=False)
    origin, sp, direction = sitk_geometry(affine)
    ref = sitk.Image(list(shape), sitk.sitkFloat32)
    ref.SetOrigin(origin)
    ref.SetSpacing(sp)
    ref.SetDirection(direction)
    slab = 0.3 * 1e3 if planes == 1 else None  # one target voxel along the plane's normal, in um
    theirs = np.transpose(sitk.GetArrayFromImage(sitk.Resample(optical_sitk_image(data, spacing, slab), ref, tx,
                                                               sitk.sitkLinear, 0.0)))
    assert 0 < np.count_nonzero(theirs) < theirs.size
    assert np.array_equal(ours != 0, theirs != 0)
    assert np.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("sampler", ["scipy", "itk"])
def test_mri_image_resampled_like_plain_simpleitk(monkeypatch, sampler):
    """``resample_image`` (the 13C image onto a finer fused grid) against ``sitk.Resample`` of the
    image with its own geometry (identity transform, LPS), without anti-aliasing."""
    from dualmode.conventions import sitk_geometry
    from dualmode.registration import resample

    monkeypatch.setattr(resample, "SCIPY_MAX_VOXELS", 10**9 if sampler == "scipy" else 0)
    img = np.random.default_rng(3).random((12, 10, 6)).astype(np.float32)
    affine = mri_affine((12, 10, 6), (2.4, 2.0, 1.8), (0.1, -0.2, 0.3), ORIENT)
    target = mri_affine((30, 26, 8), (2.7, 2.34, 2.0), (0.0, 0.1, 0.2), ORIENT)
    ours = resample.resample_image(img, affine, (30, 26, 8), target, antialias=False)
    moving = sitk.GetImageFromArray(np.ascontiguousarray(img.T))
    for setter, value in zip((moving.SetOrigin, moving.SetSpacing, moving.SetDirection), sitk_geometry(affine)):
        setter(value)
    ref = sitk.Image([30, 26, 8], sitk.sitkFloat32)
    for setter, value in zip((ref.SetOrigin, ref.SetSpacing, ref.SetDirection), sitk_geometry(target)):
        setter(value)
    theirs = np.transpose(sitk.GetArrayFromImage(sitk.Resample(moving, ref, sitk.Transform(), sitk.sitkLinear, 0.0)))
    assert 0 < np.count_nonzero(theirs) < theirs.size
    assert np.array_equal(ours != 0, theirs != 0) and np.allclose(ours, theirs, atol=1e-6)
