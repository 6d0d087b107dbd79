"""Co-registration of fluorescence to 13C MRI: dualmode against intensity-only peers.

Cases (synthetic pairs with a known ``optical_to_mri``, :func:`dualmode.simulate.make_pair`):

``2D easy (5 deg, centred)`` the optics centred on the MRI field, 5 deg: where intensity-only peers converge
``2D rot30 shifted``       64x64x1 MRI (0.22 mm), 400x400 widefield optics (12 um), 30 deg, optics 2.5 mm off-centre
``2D rot-25 mirrored``     as above, mirrored optics (det -1), -25 deg
``widefield vs 3D MRI``    48^3 MRI (0.25 mm), widefield optics, 15 deg
``3D stack``               48^3 MRI, 300x300x20 z-stack (15 x 40 um), -20 deg, mirrored, 1 deg tilt

Tools
    ``dualmode``: :func:`dualmode.registration.register` (particles + RANSAC + weighted
    fit + Mattes-MI refinement), given the coarse centre (+- 1.5 mm error, 3 mm search).
    ``SimpleITK Mattes-MI default``: the textbook SimpleITK pipeline (geometry-centred
    initializer, Euler transform, Mattes MI 32 bins, all pixels, gradient descent with
    physical-shift scales, one level: a 4/2/1 pyramid of these ~45 px images diverged even on
    the easy case), no particles; fixed = optics blurred/subsampled to the MRI PSF (the smaller
    field), moving = MRI (MIP over 0.4 mm for widefield against a 3D MRI).
    ``elastix``: ``itk.elastix_registration_method`` with the default ``rigid`` parameter
    map plus geometric-centre initialisation (absent from the default map) and 2 resolutions
    instead of 4 (small images), same images.

``CPD rigid`` / ``CPD rigid mirrored`` / ``CPD best``: Coherent Point Drift (Myronenko & Song,
IEEE TPAMI 32:2262 (2010); ``pycpd.RigidRegistration`` with the scale held at the declared
pixel size: rotation + translation) on
the *same detected point sets* dualmode matches (optical particles in mm, MRI particles in
the grid frame, from :func:`dualmode.registration.problem.prepare`), started from the
identity after centring (CPD has no correspondence search); ``mirrored`` flips the optical z
(3D) or y (2D) first; ``best`` keeps the variant with the smaller final variance sigma^2.
Widefield against a 3D MRI is not defined for CPD (2D points against 3D points).
The orientation cases (``3D stack, orientation ...``) give no centre to either tool.
``success`` = median true TRE <= 0.5 voxel.

``tre_mm``: median over the true optical particle positions of the distance between
the estimated and the true mapping (in-plane for widefield optics); ``tre_vox`` in MRI
voxels. Times are one warm call each (the first call of every tool is untimed). Rigid peers
cannot represent a mirror: their TRE on mirrored cases shows what that costs.
"""

from __future__ import annotations

import time

import numpy as np

from dualmode.registration.refine import transform_matrix

from . import missing, row

SUITE = "registration"

CASES = {
    "2D easy (5 deg, centred)": dict(angle_deg=5.0, shift_mm=(0.0, 0.0, 0.0), n_particles=120),
    "2D rot30 shifted": dict(angle_deg=30.0, shift_mm=(2.5, -1.5, 0.0), n_particles=120),
    "2D rot-25 mirrored": dict(angle_deg=-25.0, mirrored=True, shift_mm=(-2.0, 2.0, 0.0), n_particles=120),
    "widefield vs 3D MRI": dict(mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(400, 400, 1),
                                optical_spacing_um=(12.0, 12.0, 50.0), n_particles=150, slab_mm=0.6,
                                angle_deg=15.0, shift_mm=(1.0, 1.0, 0.0)),
    "3D stack": dict(mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(300, 300, 20),
                     optical_spacing_um=(15.0, 15.0, 40.0), n_particles=150, slab_mm=1.0, angle_deg=-20.0,
                     mirrored=True, tilt_deg=1.0, shift_mm=(1.5, -1.0, 0.0), brightness=800.0),
}
_STACK = dict(CASES["3D stack"], angle_deg=0.0, mirrored=False, tilt_deg=0.0)
#: 3D stacks in other orientations (optical axes as columns in MRI RAS), no centre given
ORIENTATIONS = {
    "3D stack, orientation z->-z (stack into the sample)": dict(_STACK, rotation=np.diag([1.0, -1.0, -1.0])),
    "3D stack, orientation optical axis along x": dict(_STACK, rotation=np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])),
    "3D stack, orientation mirrored, axis along y": dict(_STACK, rotation=np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0.0]])),
    "3D stack, orientation random (seed 3)": dict(_STACK, rotation="random3"),
}


def _tre_mm(pair, o2m):
    from dualmode.simulate import true_tre

    planar = pair.optical_data.shape[2] == 1
    return float(np.median(true_tre(o2m, pair.optical_to_mri, pair.optical_xyz_um, planar=planar)))


def _images(pair):
    """Fixed = optics (blurred to the MRI PSF, subsampled to about half an MRI voxel; the smaller
    field, so every fixed sample has a partner), moving = MRI in its grid frame (the MIP over
    0.4 mm around the placement for widefield against a 3D MRI). Arrays [x, y(, z)] and mm spacings."""
    from scipy import ndimage as ndi

    from dualmode.conventions import apply_affine, voxel_sizes
    from dualmode.registration import grid_frame
    from dualmode.registration.refine import fixed_image

    vox = voxel_sizes(pair.mri_affine)
    planar = pair.optical_data.shape[2] == 1
    z_mm = apply_affine(np.linalg.inv(grid_frame(pair.mri_affine)), pair.center_mm)[2]
    mri, msp = fixed_image(pair.mri_image, vox, planar, z_mm, 0.4)
    opt = pair.optical_data[:, :, 0] if planar else pair.optical_data
    osp = np.asarray(pair.spacing_um, float)[: opt.ndim] * 1e-3
    opt = ndi.gaussian_filter(opt.astype(float), 0.5 * msp.min() / osp)
    step = np.maximum(1, np.floor(0.5 * msp.min() / osp)).astype(int)
    opt = opt[tuple(slice(None, None, k) for k in step)]
    return opt, osp * step, mri, msp, planar


def _to_o2m(pair, optical_to_grid_mm: np.ndarray, planar: bool) -> np.ndarray:
    """Peer transform (fixed = optical mm -> moving = MRI grid mm, 3x3 or 4x4) -> optical um -> RAS mm."""
    from dualmode.registration import grid_frame

    t = np.eye(4)
    if planar:
        t[np.ix_([0, 1, 3], [0, 1, 3])] = optical_to_grid_mm
        t[2, 3] = (np.linalg.inv(grid_frame(pair.mri_affine)) @ np.r_[pair.center_mm, 1])[2]
    else:
        t = optical_to_grid_mm.copy()
    t[:3, :3] = t[:3, :3] * 1e-3
    return grid_frame(pair.mri_affine) @ t


def _sitk_default(pair):
    import SimpleITK as sitk

    fixed, fsp, moving, msp, planar = _images(pair)
    dim = fixed.ndim
    f = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(fixed)).astype(np.float32))
    f.SetSpacing(tuple(fsp))
    m = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(moving)).astype(np.float32))
    m.SetSpacing(tuple(msp))
    euler = sitk.Euler2DTransform() if dim == 2 else sitk.Euler3DTransform()
    init = sitk.CenteredTransformInitializer(f, m, euler, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100,
                                      convergenceMinimumValue=1e-6, convergenceWindowSize=10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(f, m)
    tx = sitk.Euler2DTransform(init) if dim == 2 else sitk.Euler3DTransform(init)
    return _to_o2m(pair, transform_matrix(tx, dim), planar)


def _elastix(pair):
    import itk
    import SimpleITK as sitk

    fixed, fsp, moving, msp, planar = _images(pair)
    dim = fixed.ndim
    f = itk.image_view_from_array(np.ascontiguousarray(np.transpose(fixed)).astype(np.float32))
    f.SetSpacing([float(s) for s in fsp])
    m = itk.image_view_from_array(np.ascontiguousarray(np.transpose(moving)).astype(np.float32))
    m.SetSpacing([float(s) for s in msp])
    po = itk.ParameterObject.New()
    pm = po.GetDefaultParameterMap("rigid")
    pm["AutomaticTransformInitialization"] = ["true"]  # the default map has none
    pm["AutomaticTransformInitializationMethod"] = ["GeometricalCenter"]
    pm["NumberOfResolutions"] = ["2"]  # the fixed optics is ~45 px: 4 levels leave nothing
    po.AddParameterMap(pm)
    _, tp = itk.elastix_registration_method(f, m, parameter_object=po, log_to_console=False)
    pmap = tp.GetParameterMap(0)
    par = [float(v) for v in pmap["TransformParameters"]]
    centre = [float(v) for v in pmap["CenterOfRotationPoint"]]
    if dim == 2:
        tx = sitk.Euler2DTransform(centre, par[0], par[1:3])
    else:
        tx = sitk.Euler3DTransform(centre, *par[:3], par[3:6])
    return _to_o2m(pair, transform_matrix(tx, dim), planar)


def _centre(pair):
    """The coarse centre given to the tools (None for the orientation cases)."""
    if getattr(pair, "no_centre", False):
        return {}
    rng = np.random.default_rng(7)
    return dict(center_mm=pair.center_mm + np.r_[rng.uniform(-1.5, 1.5, 2), 0.0], uncertainty_mm=3.0)


def _dualmode(pair):
    from dualmode.registration import register

    reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, **_centre(pair))
    return reg.optical_to_mri, f"{reg.method}, {reg.matched} pairs, LOO TRE {reg.tre_loo_mm:.3f} mm"


def _points(pair):
    """The detected point sets dualmode matches: optical (um), MRI (grid-frame mm), mode."""
    from dualmode.registration.problem import prepare

    opts = dict(center_mm=None, uncertainty_mm=3.0, orientation=None, orientation_uncertainty_deg=180.0,
                diameter_um=200.0, allow_mirror=True, model="similarity", max_scale_error=0.1, min_snr=5.0,
                tol_mm=None, depth_of_field_um=None, accept_tol=1.0, max_particles=400, noise_sigma=1.0)
    pb = prepare(pair.mri_image, pair.mri_affine, pair.noise_sigma, pair.optical, opts)
    return pb.o, pb.m, pb.mode, pb.frame


def _fixed_scale_cpd():
    """pycpd's rigid CPD estimates a scale; the optical pixel size is known, so keep it at 1
    (the rigid case of Myronenko & Song, Fig. 2, with s = 1)."""
    from pycpd import RigidRegistration

    class FixedScale(RigidRegistration):
        def update_transform(self):
            super().update_transform()
            mu_x = np.sum(self.P @ self.X, axis=0) / self.Np
            mu_y = np.sum(self.P.T @ self.Y, axis=0) / self.Np
            self.s = 1.0
            self.t = mu_x - self.R.T @ mu_y

    return FixedScale


def _cpd(pair, mirror):
    """Rigid CPD (scale fixed at the declared pixel size) of the optical onto the MRI
    particles; ``(o2m, sigma2)``."""
    RigidRegistration = _fixed_scale_cpd()

    o, m, mode, frame = _points(pair)
    if mode == "widefield":
        raise ValueError("CPD needs point sets of one dimension (widefield 2D vs 3D MRI)")
    dims = 2 if mode == "slice" else 3
    flip = np.ones(3)
    if mirror:
        flip[dims - 1] = -1.0
    y = (o * flip * 1e-3)[:, :dims]
    x = m[:, :dims]
    shift_y, shift_x = y.mean(0), x.mean(0)
    prior = _centre(pair)
    if prior:  # the same coarse placement dualmode gets: MRI particles that can be in the field
        centre = (np.linalg.inv(frame) @ np.r_[prior["center_mm"], 1.0])[:dims]
        reach = prior["uncertainty_mm"] + 0.5e-3 * np.linalg.norm(np.ptp(o, axis=0))
        x = x[np.linalg.norm(x - centre, axis=1) <= reach]
        shift_x = centre
    reg = RigidRegistration(X=x - shift_x, Y=y - shift_y, w=0.2)
    reg.register()
    s, rot, t = reg.get_registration_parameters()
    lin = np.eye(3)
    lin[:dims, :dims] = s * rot.T
    t_grid = np.zeros(3)
    t_grid[:dims] = t + shift_x - lin[:dims, :dims] @ shift_y
    if dims == 2:
        t_grid[2] = float(np.median(m[:, 2]))
    aff = np.eye(4)
    aff[:3, :3] = lin @ np.diag(flip) * 1e-3
    aff[:3, 3] = t_grid
    return frame @ aff, float(reg.sigma2)


def _cpd_rigid(pair):
    o2m, s2 = _cpd(pair, False)
    return o2m, f"sigma2 {s2:.3g}"


def _cpd_mirrored(pair):
    o2m, s2 = _cpd(pair, True)
    return o2m, f"sigma2 {s2:.3g}"


def _cpd_best(pair):
    (a, sa), (b, sb) = _cpd(pair, False), _cpd(pair, True)
    return (a, f"proper, sigma2 {sa:.3g}") if sa <= sb else (b, f"mirrored, sigma2 {sb:.3g}")


TOOLS = (("dualmode", _dualmode), ("CPD rigid", _cpd_rigid), ("CPD rigid mirrored", _cpd_mirrored),
         ("CPD best", _cpd_best), ("SimpleITK Mattes-MI default", _sitk_default), ("elastix", _elastix))


def run(quick: bool = False) -> list[dict]:
    from dualmode.simulate import make_pair

    rows = []
    cases = dict(list(CASES.items())[:2]) if quick else {**CASES, **ORIENTATIONS}
    try:  # import outside the timed region (itk loads lazily and slowly)
        import itk

        itk.ParameterObject.New()
    except Exception:
        pass
    warm = set()
    for name, kw in cases.items():
        pair = _make(make_pair, kw)
        for tool, fn in TOOLS:
            if name in ORIENTATIONS and tool in ("SimpleITK Mattes-MI default", "elastix"):
                continue  # intensity peers need a starting orientation; see the cases above
            if tool not in warm:  # first call of each tool untimed (imports, lazy loading)
                warm.add(tool)
                try:
                    fn(pair)
                except Exception:
                    pass
            t0 = time.perf_counter()
            try:
                out = fn(pair)
            except ImportError as err:
                rows.append(missing(SUITE, name, tool, err))
                continue
            except Exception as err:  # a peer failing on this data is a result, not a crash
                rows.append(row(SUITE, name, tool, time.perf_counter() - t0, tre_mm=None,
                                note=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"))
                continue
            elapsed = time.perf_counter() - t0
            o2m, note = out if isinstance(out, tuple) else (out, "")
            tre = _tre_mm(pair, o2m)
            vox = float(np.sqrt((pair.mri_affine[:3, 0] ** 2).sum()))
            rows.append(row(SUITE, name, tool, elapsed, tre_mm=tre, tre_vox=tre / vox,
                            success=float(tre / vox <= 0.5), note=note))
    return rows + _success_rates(rows)


def _make(make_pair, kw):
    kw = dict(kw)
    no_centre = isinstance(kw.get("rotation"), str) or "rotation" in kw
    if isinstance(kw.get("rotation"), str):
        from scipy.spatial.transform import Rotation

        kw["rotation"] = Rotation.random(random_state=int(kw["rotation"][6:])).as_matrix()
    pair = make_pair(11, **kw)
    pair.no_centre = no_centre
    return pair


def _success_rates(rows):
    """One summary row per tool: success rate and median TRE over the cases it ran."""
    out = []
    for tool, _ in TOOLS:
        mine = [r for r in rows if r["tool"] == tool]
        if not mine:
            continue
        tre = [r["tre_vox"] for r in mine if r.get("tre_vox") is not None]
        times = [r["time_s"] for r in mine if r.get("time_s") is not None]
        out.append(row(SUITE, "all cases (success rate)", tool, float(np.median(times)) if times else None,
                       success=float(np.mean([r.get("success", 0.0) or 0.0 for r in mine])),
                       tre_vox=float(np.median(tre)) if tre else None, note=f"{len(mine)} cases"))
    return out


if __name__ == "__main__":
    for r in run(quick=False):
        print(r)
