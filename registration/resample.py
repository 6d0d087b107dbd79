"""Optical image on an MRI-world grid, and the transform as an ITK ``.tfm``.

Frames
    ``optical_to_mri`` maps optical physical um (origin at the first pixel centre,
    axes along the array axes) to MRI world RAS mm. ITK works in LPS, so the
    MRI side is converted with :func:`dualmode.conventions.ras_to_lps`; the optical
    image is given to ITK as an image with origin 0, identity direction and spacing
    in um (its physical frame *is* the optical frame, unit um).

ITK transform direction
    An ITK transform used for resampling maps points of the *fixed* (output) space
    to the *moving* (input) space. Here fixed = MRI world LPS mm and moving =
    optical um, so the stored transform is ``inv(RAS_TO_LPS @ optical_to_mri)``.

Sampling
    Linear interpolation with ITK's rules: an output voxel whose centre maps to the continuous
    index ``c`` of the moving image is 0 unless ``-1/2 <= c < n - 1/2`` on every axis (ITK's
    ``IsInsideBuffer``); inside, neighbours past the last pixel are the edge pixel. Grids of up to
    :data:`SCIPY_MAX_VOXELS` voxels are sampled by :func:`scipy.ndimage.affine_transform` (mode
    ``nearest`` plus that inside test), larger ones by SimpleITK's ``ResampleImageFilter`` (about 6x
    faster per voxel, multi-threaded, but 0.1-0.2 s and ~80 MB resident to load: a 2D folder's
    grids never need it). Both give the same voxels to float rounding (``tests/test_registration_resample.py``
    checks both against plain SimpleITK with the written ``.tfm``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from scipy import ndimage as ndi

from dualmode.conventions import RAS_TO_LPS

#: Output grids up to this many voxels are sampled with SciPy; larger ones with SimpleITK.
SCIPY_MAX_VOXELS = 2**19

#: ITK's own setting for its global thread count, read when SimpleITK is first loaded.
ITK_THREADS_VARIABLE = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


def _check_transform(optical_to_mri) -> np.ndarray:
    mat = np.asarray(optical_to_mri, float)
    if mat.shape != (4, 4) or not np.all(np.isfinite(mat)) or abs(np.linalg.det(mat[:3, :3])) < 1e-30:
        raise ValueError("optical_to_mri must be a finite, invertible 4x4 matrix")
    return mat


def write_tfm(path: str | os.PathLike, optical_to_mri: np.ndarray) -> None:
    """Write ``optical_to_mri`` as an ITK ``.tfm`` (an ``AffineTransform_double_3_3``).

    Convention: ITK transforms map *fixed* points to *moving* points. Fixed is the
    MRI in LPS mm (as ITK/3D Slicer read the NIfTI), moving is the optical image
    as an ITK image with origin 0 at the first pixel centre, identity direction and
    spacing in **um** (the optical physical frame). So the file holds
    ``inv(RAS_TO_LPS @ optical_to_mri)`` and
    ``sitk.Resample(optical_um_image, mri_image, sitk.ReadTransform(path))`` puts the
    optics on the MRI grid (see :func:`optical_sitk_image`).

    The text is ITK's transform file format V1.0 as ``sitk.WriteTransform`` writes it for an
    ``AffineTransform(3)`` (12 parameters: the matrix row by row, then the translation; fixed
    parameters: the centre, 0), numbers in Python's shortest round-trip form: written without
    loading SimpleITK, read back by it in the tests.
    """
    from dualmode.atomic import atomic_path

    inv = np.linalg.inv(RAS_TO_LPS @ _check_transform(optical_to_mri))
    params = " ".join(repr(float(v)) for v in (*inv[:3, :3].ravel(), *inv[:3, 3]))
    text = ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
            f"Parameters: {params}\nFixedParameters: 0 0 0\n")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)


def read_tfm(path: str | os.PathLike) -> np.ndarray:
    """Inverse of :func:`write_tfm`: the 4x4 ``optical_to_mri`` (um -> RAS mm); any affine ``.tfm``
    SimpleITK reads (a centre is folded into the translation)."""
    import SimpleITK as sitk

    tx = sitk.ReadTransform(os.fspath(path))
    tx = sitk.AffineTransform(tx) if tx.GetName() != "AffineTransform" else tx
    mat = np.eye(4)
    mat[:3, :3] = np.array(tx.GetMatrix()).reshape(3, 3)
    centre = np.array(tx.GetCenter())
    mat[:3, 3] = np.array(tx.GetTranslation()) + centre - mat[:3, :3] @ centre
    return np.linalg.inv(RAS_TO_LPS) @ np.linalg.inv(mat)


def _as_volume(data: np.ndarray, spacing_um, slab_um: float | None = None, origin_um=None):
    """``(array, spacing, origin)`` of ``data[x, y, z]`` in the optical frame (um). A single plane
    (widefield) becomes a slab of thickness ``slab_um`` centred on z = 0: two identical planes at
    ``+-slab/2``, so that it can be sampled in 3D."""
    arr = np.asarray(data, np.float32)
    sp = np.array([float(s) for s in spacing_um])
    origin = np.zeros(3) if origin_um is None else np.array([float(o) for o in origin_um])
    if arr.shape[2] == 1:
        slab = float(slab_um if slab_um is not None else sp[2])
        arr = np.concatenate([arr, arr], axis=2)
        sp[2], origin[2] = slab, -slab / 2
    return arr, sp, origin


def optical_sitk_image(data: np.ndarray, spacing_um, slab_um: float | None = None, origin_um=None):
    """``data[x, y, z]`` as a SimpleITK image in the optical frame (um, identity direction, origin
    ``origin_um``, default 0: the first pixel centre); a single plane becomes a slab of thickness
    ``slab_um`` centred on z = 0 (two identical planes at ``+-slab/2``)."""
    import SimpleITK as sitk

    arr, sp, origin = _as_volume(data, spacing_um, slab_um, origin_um)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr)))
    img.SetSpacing([float(v) for v in sp])
    img.SetOrigin([float(v) for v in origin])
    return img


def itk_default_threads() -> int:
    """SimpleITK's global thread count: its setting if loaded, else what it would start with
    (:data:`ITK_THREADS_VARIABLE`, else one per core)."""
    sitk = sys.modules.get("SimpleITK")
    if sitk is not None:
        return sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    return itk_start_threads()


def itk_start_threads() -> int:
    """The global thread count SimpleITK starts with when loaded now: :data:`ITK_THREADS_VARIABLE`
    if set to a positive number, else one per core."""
    value = os.environ.get(ITK_THREADS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


def folder_threads() -> int:
    """Threads a folder's step may use: the larger of SimpleITK's global thread count and
    ``scipy.fft``'s workers (a batch sets these to the folder's share of the cores); does not
    load SimpleITK."""
    import scipy.fft

    return max(itk_default_threads(), scipy.fft.get_workers())


def gaussian_nearest(image: np.ndarray, sigma, threads: int | None = None) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="nearest")``, the same values, on two threads.

    SciPy filters one axis after the other (:func:`scipy.ndimage.gaussian_filter1d`, each pass
    into the output array); here each pass is cut in two halves across another axis and the
    halves run at once (ndimage releases the GIL). Every line is still filtered whole, so the
    result is identical. One thread (``threads`` < 2, default :func:`folder_threads`) or a small
    image: SciPy's call itself.
    """
    image = np.asarray(image)
    sigma = np.broadcast_to(np.asarray(sigma, float), (image.ndim,))
    axes = [a for a in range(image.ndim) if sigma[a] > 1e-15]
    if (folder_threads() if threads is None else threads) < 2 or image.size < 2**17 or not axes:
        return ndi.gaussian_filter(image, sigma, mode="nearest")
    from concurrent.futures import ThreadPoolExecutor

    out = np.zeros(image.shape, image.dtype)
    src = image
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="dualmode-blur") as pool:
        for a in axes:
            b = max((ax for ax in range(image.ndim) if ax != a), key=lambda ax: image.shape[ax])
            cut = image.shape[b] // 2
            parts = [tuple(slice(lo, hi) if ax == b else slice(None) for ax in range(image.ndim))
                     for lo, hi in ((0, cut), (cut, None))]
            list(pool.map(lambda part: ndi.gaussian_filter1d(src[part], sigma[a], axis=a, output=out[part],
                                                             mode="nearest"), parts))
            src = out
    return out


def binned_blur(data: np.ndarray, spacing_um, sigma_px) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian blur of ``sigma_px`` (optical pixels, per axis) on a binned copy, for resampling onto
    a coarser grid; returns ``(image, spacing_um, origin_um)`` of the binned grid.

    Blocks of ``step = max(1, floor(sigma / 4))`` pixels are averaged (edge pixels repeated to fill
    the last block), then the rest of the Gaussian is applied on the binned grid, its variance
    reduced by the box's ``(step^2 - 1) / 12`` px^2 (as :func:`skimage.transform.rescale` does
    for anti-aliasing, the box and Gaussian together have the Gaussian's variance). Linear
    interpolation of the binned grid adds at most ``step^2 / 4 <= sigma^2 / 64`` px^2 (a blob's
    peak within 1 % of the full-resolution Gaussian; within 3 sigma of the field edge, where
    both extend the edge, within 3 %). The origin
    is the first block's centre, ``(step - 1) / 2`` pixels. A 500 x 500 x 20 stack blurred by
    9.5 px costs ~8x less binned than the full-resolution Gaussian.
    """
    sig = np.where(np.asarray(sigma_px, float) < 0.25, 0.0, sigma_px)  # below 0.25 px: weights < 4e-4 off centre
    sp = np.asarray(spacing_um, float)
    step = np.maximum(1, np.floor(sig / 4.0)).astype(int)
    if np.all(step == 1):
        out = gaussian_nearest(data, sig) if np.any(sig > 0) else data
        return out, sp, np.zeros(3)
    pad = [(0, (-n) % k) for n, k in zip(data.shape, step)]
    full = np.pad(data, pad, mode="edge") if any(p[1] for p in pad) else data
    order = "F" if full.flags.f_contiguous and not full.flags.c_contiguous else "C"  # the source's layout:
    binned = np.zeros([n // k for n, k in zip(full.shape, step)], np.float32, order=order)  # 3x faster sums
    for offset in np.ndindex(*step):  # one strided view per position in the block: V reads in all
        binned += full[tuple(slice(o, None, k) for o, k in zip(offset, step))]
    binned /= np.prod(step)
    rest = np.sqrt(np.maximum(sig**2 - (step**2 - 1) / 12.0, 0.0)) / step
    return gaussian_nearest(binned, rest), sp * step, (step - 1) / 2 * sp


def _outside_field(shape, affine, optical_to_mri, data_shape, spacing_um) -> np.ndarray:
    """Target voxels whose centre lies beyond the optical field's far edge (``n - 1/2`` pixels)
    along an axis of length > 1: where a binned copy padded past the field would still give values."""
    to_px = np.diag([*(1.0 / np.asarray(spacing_um, float)), 1.0]) @ np.linalg.inv(optical_to_mri) @ affine
    grids = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    out = np.zeros(tuple(int(n) for n in shape), bool)
    for a, n in enumerate(data_shape):
        if n > 1:
            out |= sum(to_px[a, i] * grids[i] for i in range(3)) + to_px[a, 3] >= n - 0.5
    return out


def antialias_sigma(spacing_um, optical_to_mri, affine) -> np.ndarray:
    """Gaussian sigma (optical pixels) matching the target voxel: ``max(0, (f - 1) / 2)`` per
    optical axis, ``f`` = target voxel footprint / optical pixel (scikit-image's rule)."""
    lin = np.linalg.inv(_check_transform(optical_to_mri)[:3, :3]) @ np.asarray(affine, float)[:3, :3]
    foot = np.sqrt((lin**2).sum(axis=1))  # um spanned along each optical axis by one voxel
    factor = foot / np.asarray(spacing_um, float)
    return np.maximum(0.0, (factor - 1.0) / 2.0)


def _outside(index_map: np.ndarray, shape, moving_shape) -> np.ndarray:
    """Output voxels whose moving continuous index is outside ``[-1/2, n - 1/2)`` on some axis."""
    grids = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    out = np.zeros(tuple(int(n) for n in shape), bool)
    for a, n in enumerate(moving_shape):
        c = sum(index_map[a, i] * grids[i] for i in range(3)) + index_map[a, 3]
        out |= (c < -0.5) | (c >= n - 0.5)
    return out


def _sample_scipy(moving: np.ndarray, index_map: np.ndarray, shape) -> np.ndarray:
    out = ndi.affine_transform(moving, index_map[:3, :3], index_map[:3, 3], output_shape=shape, order=1,
                               mode="nearest", output=np.float32)
    out[_outside(index_map, shape, moving.shape)] = 0.0
    return out


def _sample_itk(moving: np.ndarray, index_map: np.ndarray, shape) -> np.ndarray:
    """ITK's resampler in index space (both images with unit spacing, origin 0 and identity
    direction; the transform maps an output index to a moving index). The output grid is given as
    numbers, not as a zero-filled reference image; the filter runs on the folder's threads
    (:func:`folder_threads`; each voxel is interpolated on its own: the same for any count)."""
    import SimpleITK as sitk

    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(float(v) for v in index_map[:3, :3].ravel()))
    tx.SetTranslation(tuple(float(v) for v in index_map[:3, 3]))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape])
    resampler.SetTransform(tx)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetNumberOfThreads(folder_threads())
    out = resampler.Execute(sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(moving))))
    return np.transpose(sitk.GetArrayFromImage(out)).astype(np.float32, copy=False)


def choose_sampler(*shapes) -> str:
    """``"scipy"`` when every grid has at most :data:`SCIPY_MAX_VOXELS` voxels, else ``"itk"``: one
    choice for all the grids of a folder (once ITK is loaded for one grid, it is the faster for all)."""
    largest = max(float(np.prod([int(n) for n in shape])) for shape in shapes)
    return "scipy" if largest <= SCIPY_MAX_VOXELS else "itk"


def _sample(moving: np.ndarray, index_from_world: np.ndarray, shape, affine: np.ndarray,
            sampler: str | None = None) -> np.ndarray:
    """``moving`` (float32, 0 outside) sampled linearly on the grid ``(shape, affine)`` (voxel -> RAS
    mm); ``index_from_world``: RAS mm -> continuous index of ``moving``. ``sampler``: ``"scipy"``,
    ``"itk"`` (same rules, see the module notes) or None (:func:`choose_sampler` of this grid)."""
    shape = tuple(int(n) for n in shape)
    index_map = np.asarray(index_from_world, float) @ np.asarray(affine, float)
    samplers = {"scipy": _sample_scipy, "itk": _sample_itk}
    if sampler not in (None, *samplers):
        raise ValueError(f"sampler must be 'scipy', 'itk' or None, got {sampler!r}")
    return samplers[sampler or choose_sampler(shape)](np.asarray(moving, np.float32), index_map, shape)


def resample_optical(
    optical_data: np.ndarray,
    spacing_um,
    optical_to_mri: np.ndarray,
    shape,
    affine: np.ndarray,
    *,
    antialias: bool = True,
    sampler: str | None = None,
) -> np.ndarray:
    """Optical image sampled on an MRI-world grid.

    Parameters
    ----------
    optical_data : (X, Y, Z) ndarray
        Fluorescence ``data[x, y, z]``; ``Z = 1`` for widefield (sampled as a slab one
        target voxel thick around its plane).
    spacing_um : sequence of 3 float
    optical_to_mri : (4, 4) ndarray
        Optical um -> RAS mm.
    shape : sequence of 3 int
        Target grid ``[i, j, k]``.
    affine : (4, 4) ndarray
        Target voxel -> RAS mm.
    antialias : bool
        Blur with a Gaussian matched to the target voxel size before sampling
        (:func:`antialias_sigma`), so that downsampling does not alias.
    sampler : {"scipy", "itk"} or None
        Who interpolates (the same voxels to float rounding); None: by the grid's size
        (:func:`choose_sampler`).

    Returns
    -------
    (I, J, K) float32 ndarray
        Zero outside the optical field. One linear resampling (transforms composed into one
        index map), from a binned copy when the target voxel spans many optical pixels
        (:func:`binned_blur`).
    """
    data = np.asarray(optical_data, np.float32)
    if data.ndim != 3:
        raise ValueError(f"optical data must be [x, y, z], got shape {data.shape}")
    shape = tuple(int(n) for n in shape)
    affine = np.asarray(affine, float)
    grid_sp, origin, field = np.asarray(spacing_um, float), np.zeros(3), data.shape
    if antialias:
        sig = antialias_sigma(spacing_um, optical_to_mri, affine)
        sig[np.array(data.shape) == 1] = 0.0
        data, grid_sp, origin = binned_blur(data, grid_sp, sig)
    slab = None
    if data.shape[2] == 1:  # a plane fills one target voxel along its normal
        zdir = np.asarray(optical_to_mri, float)[:3, 2]
        steps = np.linalg.inv(affine[:3, :3]) @ (zdir / np.linalg.norm(zdir))  # voxels per mm
        thick_mm = 1.0 / max(np.abs(steps).max(), 1e-12)
        slab = thick_mm / np.linalg.norm(zdir)
    moving, sp, origin = _as_volume(data, grid_sp, slab, origin)
    to_index = np.diag([*(1.0 / sp), 1.0])
    to_index[:3, 3] = -origin / sp
    out = _sample(moving, to_index @ np.linalg.inv(_check_transform(optical_to_mri)), shape, affine, sampler)
    step = np.rint(grid_sp / np.asarray(spacing_um, float)).astype(int)
    if np.any(np.asarray(field) % step):  # the binned copy was padded past the field's far edge
        out[_outside_field(shape, affine, optical_to_mri, field, spacing_um)] = 0.0
    return out


def resample_image(
    image: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray, *, antialias: bool = True,
    sampler: str | None = None,
) -> np.ndarray:
    """An image ``[i, j, k]`` on grid ``affine`` resampled (linear) onto ``(shape, target_affine)``
    (both RAS mm), Gaussian anti-aliasing along axes whose voxel the target makes coarser;
    ``sampler`` as in :func:`resample_optical`."""
    img = np.asarray(image, np.float32)
    affine = np.asarray(affine, float)
    target_affine = np.asarray(target_affine, float)
    if antialias:
        lin = np.linalg.inv(affine[:3, :3]) @ target_affine[:3, :3]  # source voxels per target voxel
        sig = np.maximum(0.0, (np.sqrt((lin**2).sum(axis=1)) - 1.0) / 2.0)
        sig[np.array(img.shape) == 1] = 0.0
        if np.any(sig > 0):
            img = ndi.gaussian_filter(img, sig, mode="nearest")
    if img.shape[2] == 1:  # a single slice fills its slice thickness
        img = np.concatenate([img, img], axis=2)
        half = affine[:3, 2] / 2
        affine = affine.copy()
        affine[:3, 3] -= half
        affine[:3, 2] = affine[:3, 2] * (1 - 1e-6)
    return _sample(img, np.linalg.inv(affine), shape, target_affine, sampler)
