"""fuse(): channels on the MRI grid, at optical resolution, or at a user spacing."""

import numpy as np
import pytest

from dualmode.conventions import apply_affine, voxel_sizes
from dualmode.registration import fuse, resample_optical
from dualmode.simulate import make_pair


@pytest.fixture(scope="module")
def pair():
    return make_pair(40, angle_deg=-35.0, mirrored=True, shift_mm=(1.5, 1.0, 0.0), n_particles=120)


def test_fuse_on_mri_grid(pair):
    fused, affine = fuse(pair.mri_image, pair.mri_affine, pair.optical, pair.optical_to_mri, grid="mri")
    assert fused.shape == (*pair.mri_image.shape, 2) and fused.dtype == np.float32
    assert np.array_equal(affine, pair.mri_affine)
    assert np.array_equal(fused[..., 0], pair.mri_image)
    expect = resample_optical(pair.optical_data, pair.spacing_um, pair.optical_to_mri, pair.mri_image.shape,
                              pair.mri_affine)
    assert np.array_equal(fused[..., 1], expect)
    assert np.count_nonzero(fused[..., 1]) < 0.5 * fused[..., 1].size  # zero outside the optical field


def _local_centroid(img, affine, world, radius_mm):
    """Background-subtracted centroid (world mm) of ``img`` within ``radius_mm`` of ``world`` in-plane."""
    centre = np.rint(apply_affine(np.linalg.inv(affine), world)).astype(int)
    half = int(np.ceil(radius_mm / voxel_sizes(affine)[0])) + 1
    lo = np.maximum(centre[:2] - half, 0)
    hi = np.minimum(centre[:2] + half + 1, img.shape[:2])
    if np.any(hi <= lo):
        return np.full(3, np.nan)
    idx = np.indices((hi[0] - lo[0], hi[1] - lo[1], img.shape[2])).reshape(3, -1).T + [lo[0], lo[1], 0]
    pts = apply_affine(affine, idx)
    vals = img[lo[0]:hi[0], lo[1]:hi[1]].ravel()
    near = np.linalg.norm(pts[:, :2] - world[:2], axis=1) < radius_mm
    w = np.clip(vals[near] - np.median(vals[near]), 0, None)
    if w.sum() <= 0:
        return np.full(3, np.nan)
    return (w[:, None] * pts[near]).sum(0) / w.sum()


def test_fuse_at_optical_resolution_keeps_particles_aligned(pair):
    fused, affine = fuse(pair.mri_image, pair.mri_affine, pair.optical, pair.optical_to_mri, grid="optical")
    sp = voxel_sizes(affine)
    assert np.allclose(sp[:2], np.asarray(pair.spacing_um[:2]) * 1e-3)
    assert sp[2] == pytest.approx(voxel_sizes(pair.mri_affine)[2])
    # same field of view as the MRI (within one fine voxel)
    fov = np.array(pair.mri_image.shape[:2]) * voxel_sizes(pair.mri_affine)[:2]
    assert np.all(np.abs(np.array(fused.shape[:2]) * sp[:2] - fov) <= sp[:2])
    # the MRI channel keeps its mean; optical particles sit on their world positions
    assert fused[..., 0].mean() == pytest.approx(pair.mri_image.mean(), rel=0.03)
    o_idx = pair.shared[:, 0]
    world = apply_affine(pair.optical_to_mri, np.c_[pair.optical_xyz_um[o_idx, :2], np.zeros(len(o_idx))])
    errs = [np.linalg.norm(_local_centroid(fused[..., 1], affine, w, 0.15)[:2] - w[:2]) for w in world]
    assert np.sum(np.isfinite(errs)) >= 0.8 * len(errs)  # a few lie on the field edge
    assert np.nanmedian(errs) < 0.01  # mm


def test_fuse_user_spacing_and_bad_grid(pair):
    fused, affine = fuse(pair.mri_image, pair.mri_affine, pair.optical, pair.optical_to_mri, grid=0.1)
    assert np.allclose(voxel_sizes(affine), [0.1, 0.1, voxel_sizes(pair.mri_affine)[2]])
    assert fused.shape[-1] == 2 and fused.shape[0] == 140
    with pytest.raises(ValueError, match="grid"):
        fuse(pair.mri_image, pair.mri_affine, pair.optical, pair.optical_to_mri, grid="bogus")
    with pytest.raises(ValueError, match="spacing"):
        fuse(pair.mri_image, pair.mri_affine, pair.optical, pair.optical_to_mri, grid=-1.0)


def test_a_folder_uses_one_sampler_for_its_three_grids(pair, monkeypatch):
    """Once one grid is large enough for ITK, all three use it (loaded anyway, and faster); all small: SciPy.
    Either way the products equal the single-call functions run with that sampler."""
    from dualmode.registration import fusion, resample

    native_shape = fusion.native_grid(pair.mri_image.shape, pair.mri_affine, pair.optical, pair.optical_to_mri)[0]
    mri_voxels = int(np.prod(pair.mri_image.shape))
    assert np.prod(native_shape) > mri_voxels
    used = []
    for name in ("_sample_scipy", "_sample_itk"):
        real = getattr(resample, name)
        monkeypatch.setattr(resample, name, lambda *a, _real=real, _name=name: used.append(_name) or _real(*a))
    for limit, expect in ((mri_voxels, "_sample_itk"), (10**9, "_sample_scipy")):
        monkeypatch.setattr(resample, "SCIPY_MAX_VOXELS", limit)  # the MRI grid alone would be SciPy's
        used.clear()
        (fused, _), on_mri, (native, _) = fusion.fuse_folder(pair.mri_image, pair.mri_affine, pair.optical,
                                                             pair.optical_to_mri, grid="optical")
        assert set(used) == {expect} and len(used) == 4  # fused: 13C + optics; optics on MRI; native
        sampler = expect.removeprefix("_sample_")
        assert np.array_equal(native, fusion.optical_native_grid(pair.mri_image.shape, pair.mri_affine, pair.optical,
                                                                 pair.optical_to_mri, sampler=sampler)[0])
        assert np.array_equal(on_mri, resample_optical(pair.optical_data, pair.spacing_um, pair.optical_to_mri,
                                                       pair.mri_image.shape, pair.mri_affine, sampler=sampler))
