"""Intensity refinement of a particle-based registration with SimpleITK Mattes mutual information.

The metric is evaluated on the MRI grid (never an upsampled MRI): the fixed image
is the MRI in its grid frame (mm along the array axes, origin at voxel 0) -- for
widefield optics against a 3D MRI, the maximum-intensity projection over the
optical depth of field around the particle z -- and the moving image is the
optical image blurred to the MRI PSF (Gaussian sigma = half an MRI voxel).
The metric is restricted by a fixed-image mask covering the optical field, and run
multi-resolution (shrink 2, 1). The optimised transform is a rigid (Euler)
correction in fixed space composed with the particle-based initial transform
(``SetMovingInitialTransform``), so mirrored initial transforms are kept.

Reference: Mattes et al., IEEE TMI 22(1):120-128 (2003).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi


def _image(arr, spacing, origin=None):
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(np.asarray(arr, np.float32))))
    img.SetSpacing([float(s) for s in spacing])
    if origin is not None:
        img.SetOrigin([float(o) for o in origin])
    return img


def _affine_tx(mat):
    dim = mat.shape[0] - 1
    tx = sitk.AffineTransform(dim)
    tx.SetMatrix(tuple(mat[:dim, :dim].ravel()))
    tx.SetTranslation(tuple(mat[:dim, dim]))
    return tx


def transform_matrix(tx, dim: int):
    """Homogeneous matrix of a SimpleITK matrix-offset transform (centre folded into the offset)."""
    mat = np.eye(dim + 1)
    mat[:dim, :dim] = np.array(tx.GetMatrix()).reshape(dim, dim)
    c = np.array(tx.GetCenter())
    mat[:dim, dim] = np.array(tx.GetTranslation()) + c - mat[:dim, :dim] @ c
    return mat


def _moving(optical, osp_mm, fsp):
    """Optical image blurred to the MRI PSF (Gaussian sigma = half an MRI voxel) on a grid of
    about half an MRI voxel: block mean by an integer step, then the remaining Gaussian
    (variance of the box ``(step^2 - 1) / 12`` px^2 subtracted). Origin stays at the block centre."""
    from skimage.transform import downscale_local_mean

    opt = np.asarray(optical, np.float32)
    sig = 0.5 * fsp.min() / osp_mm  # px
    step = np.maximum(1, np.floor(0.5 * fsp.min() / osp_mm)).astype(int)
    step[np.array(opt.shape) == 1] = 1
    crop = tuple(slice(0, (n // k) * k) for n, k in zip(opt.shape, step))
    small = downscale_local_mean(opt[crop], tuple(step)) if np.any(step > 1) else opt
    rest = np.sqrt(np.maximum(sig**2 - (step**2 - 1) / 12.0, 0.0)) / step
    small = ndi.gaussian_filter(small.astype(np.float32), rest, mode="nearest")
    origin = (step - 1) / 2 * osp_mm
    return (_image(small, osp_mm * step, origin),
            _image(np.ones_like(small), osp_mm * step, origin))


def _fixed_mask(ones_moving, fixed_img, t0):
    cover = sitk.Resample(ones_moving, fixed_img, t0, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask_arr = sitk.GetArrayFromImage(cover) > 0.99
    if mask_arr.sum() < 16:
        return None
    mask = sitk.GetImageFromArray(mask_arr.astype(np.uint8))
    mask.CopyInformation(fixed_img)
    return mask


def fixed_image(mri_image, vox_mm, planar_optics, z_mm=None, depth_mm=None):
    """MRI as seen by the metric: 3D grid, or 2D slice / MIP over ``z_mm +- depth_mm / 2``."""
    img = np.asarray(mri_image, float)
    if not planar_optics:
        return img, np.asarray(vox_mm, float)
    if img.shape[2] == 1:
        return img[:, :, 0], np.asarray(vox_mm[:2], float)
    k = np.arange(img.shape[2]) * vox_mm[2]
    sel = np.abs(k - z_mm) <= max(depth_mm / 2, vox_mm[2] / 2) if z_mm is not None else slice(None)
    sel = sel if np.any(sel) else np.abs(k - z_mm) == np.abs(k - z_mm).min()
    return img[:, :, sel].max(axis=2), np.asarray(vox_mm[:2], float)


def mattes_refine(
    fixed: np.ndarray,
    fixed_spacing_mm,
    optical: np.ndarray,
    optical_spacing_um,
    init_um_to_mm: np.ndarray,
    *,
    model: str = "rigid",
    bins: int = 32,
    iterations: int = 100,
) -> tuple[np.ndarray, dict]:
    """Refine ``init_um_to_mm`` (optical um -> fixed-grid-frame mm) by Mattes MI.

    ``fixed`` and ``optical`` are both 2D (in-plane refinement) or both 3D. ``model``
    is the optimised correction: ``"rigid"`` (Euler), ``"similarity"`` or ``"affine"``.

    Returns
    -------
    refined : ndarray
        Same shape as ``init_um_to_mm`` ((3, 3) for 2D, (4, 4) for 3D).
    info : dict
        Metric before/after, iterations, stop condition.
    """
    dim = fixed.ndim
    fsp = np.asarray(fixed_spacing_mm, float)[:dim]
    osp_mm = np.asarray(optical_spacing_um, float)[:dim] * 1e-3
    opt = np.asarray(optical, np.float32)  # _moving blurs it in float32
    fixed_img = _image(fixed, fsp)
    moving_img, ones = _moving(opt, osp_mm, fsp)
    scale_um = np.diag([*([1e3] * dim), 1.0])
    init_mm = np.asarray(init_um_to_mm, float) @ scale_um  # optical mm -> fixed mm
    t0 = _affine_tx(np.linalg.inv(init_mm))  # fixed -> moving
    mask = _fixed_mask(ones, fixed_img, t0)  # fixed pixels inside the optical field
    if mask is None:
        return np.asarray(init_um_to_mm, float), {"accepted": False, "reason": "overlap too small"}
    centre_opt = (np.array(opt.shape[:dim]) - 1) / 2 * osp_mm
    centre_fixed = init_mm[:dim, :dim] @ centre_opt + init_mm[:dim, dim]
    kinds = {"rigid": (sitk.Euler2DTransform, sitk.Euler3DTransform),
             "similarity": (sitk.Similarity2DTransform, sitk.Similarity3DTransform),
             "affine": (lambda: sitk.AffineTransform(2), lambda: sitk.AffineTransform(3))}
    if model not in kinds:
        raise ValueError(f"model must be one of {sorted(kinds)}, got {model!r}")
    euler = kinds[model][dim - 2]()
    euler.SetCenter(tuple(centre_fixed))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5 * fsp.min(), minStep=1e-3 * fsp.min(),
                                                 numberOfIterations=iterations,
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetMovingInitialTransform(t0)
    reg.SetInitialTransform(euler, inPlace=True)
    before = float(reg.MetricEvaluate(fixed_img, moving_img))
    reg.Execute(fixed_img, moving_img)
    after = float(reg.GetMetricValue())
    d = transform_matrix(euler, dim)  # fixed -> fixed correction, applied before t0
    refined_mm = np.linalg.inv(d) @ init_mm
    refined = refined_mm @ np.linalg.inv(scale_um)
    info = {"metric_before": before, "metric_after": after,
            "iterations": int(reg.GetOptimizerIteration()),
            "stop": reg.GetOptimizerStopConditionDescription()}
    return refined, info


def mattes_value(fixed, fixed_spacing_mm, optical, optical_spacing_um, um_to_mm, bins: int = 32) -> float:
    """Mattes MI (ITK sign: lower is better) of a fixed transform, same setup as :func:`mattes_refine`."""
    dim = fixed.ndim
    fsp = np.asarray(fixed_spacing_mm, float)[:dim]
    osp_mm = np.asarray(optical_spacing_um, float)[:dim] * 1e-3
    fixed_img = _image(fixed, fsp)
    moving, ones = _moving(optical, osp_mm, fsp)
    scale_um = np.diag([*([1e3] * dim), 1.0])
    t0 = _affine_tx(np.linalg.inv(np.asarray(um_to_mm, float) @ scale_um))
    mask = _fixed_mask(ones, fixed_img, t0)
    if mask is None:
        return 0.0
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(t0)
    return float(reg.MetricEvaluate(fixed_img, moving))
