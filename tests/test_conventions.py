"""The conventions of dualmode.conventions, pinned."""

import numpy as np
import pytest
import SimpleITK as sitk

from dualmode.conventions import (apply_affine, fft_centered, ifft_centered, mri_affine, optical_affine,
                                  ras_to_lps, sitk_geometry, voxel_sizes)


def test_fft_centered_matches_explicit_dft_sign_and_origin():
    n = 8
    x = np.arange(n) - n // 2  # image coordinates, index n//2 is x = 0
    f = np.zeros(n, complex)
    f[n // 2 + 1] = 1.0  # delta at x = +1
    k = np.arange(n) - n // 2
    expected = np.exp(-2j * np.pi * k * 1 / n)
    got = fft_centered(f, axes=(0,))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.isclose(fft_centered(np.ones(n), axes=(0,))[n // 2], n)  # DC at index n//2, unnormalised
    assert x[n // 2] == 0


def test_ifft_centered_inverts_and_matches_numpy_fft():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 5, 4)) + 1j * rng.normal(size=(6, 5, 4))
    np.testing.assert_allclose(ifft_centered(fft_centered(a)), a, atol=1e-12)
    ref = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(a)))
    np.testing.assert_allclose(fft_centered(a), ref, atol=1e-10)


def test_mri_affine_puts_dft_origin_at_position_and_scales_by_voxel():
    aff = mri_affine((64, 32, 1), (12.8, 9.6, 2.0), (1.0, -2.0, 3.0))
    np.testing.assert_allclose(apply_affine(aff, [32, 16, 0]), [1.0, -2.0, 3.0])
    np.testing.assert_allclose(voxel_sizes(aff), [0.2, 0.3, 2.0])
    # first voxel centre sits N//2 voxels below the position
    np.testing.assert_allclose(apply_affine(aff, [0, 0, 0]), [1.0 - 6.4, -2.0 - 4.8, 3.0])


def test_mri_affine_orientation_columns_are_axis_directions():
    rot = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]])  # i -> A, j -> R, k -> I
    aff = mri_affine((4, 4, 4), (4, 4, 4), (0, 0, 0), rot)
    step_i = apply_affine(aff, [3, 2, 2]) - apply_affine(aff, [2, 2, 2])
    np.testing.assert_allclose(step_i, [0, 1, 0])


@pytest.mark.parametrize("matrix,fov", [((4, 4, 0), (1, 1, 1)), ((4, 4, 1), (1, -1, 1)), ((4, 4, 1), (1, 0, 1))])
def test_mri_affine_rejects_absurd_geometry(matrix, fov):
    with pytest.raises(ValueError, match="absurd geometry"):
        mri_affine(matrix, fov)


def test_optical_affine_origin_is_first_pixel_centre_in_um():
    aff = optical_affine((10.0, 10.0, 50.0))
    np.testing.assert_allclose(apply_affine(aff, [0, 0, 0]), [0, 0, 0])
    np.testing.assert_allclose(apply_affine(aff, [2, 1, 1]), [20, 10, 50])


def test_ras_to_lps_and_simpleitk_geometry_agree_on_a_voxel():
    aff = mri_affine((8, 6, 4), (8.0, 12.0, 4.0), (5.0, -3.0, 2.0))
    origin, spacing, direction = sitk_geometry(aff)
    img = sitk.Image(8, 6, 4, sitk.sitkFloat32)  # SimpleITK sizes are (i, j, k)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    ijk = (3, 2, 1)
    lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
    ras = apply_affine(aff, ijk)
    np.testing.assert_allclose(lps, ras * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(ras_to_lps(aff)[:3, 3], aff[:3, 3] * [-1, -1, 1])
