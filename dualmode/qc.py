"""``qc.png``: one picture a person reads at a glance.

Top row: first + shot, first - shot, background-free 13C (H, windowed from the noise
floor, detections circled), background (B). Bottom row: the optical image (the NV
lock-in image when modulated frames exist), the fused overlay (13C magenta, optical
green, the colours of the OME-TIFF and of napari), the particle matches with unmatched
particles marked by reason, and the numbers. A folder whose registration failed gets
the same 13C row, the detections of both modes, the best rejected hypothesis when the
registration exposes one, and the error.

3D data are shown as maximum-intensity projections along z. Images are drawn with x to
the right and y up (RAS: right/anterior), with scale bars and direction letters instead
of axis ticks. The page is composed as one RGB array (:mod:`dualmode.qc_canvas`: colour
lookup tables, panels tiled) and its text and markers are drawn once with Pillow; no
plotting library is imported.
"""

from __future__ import annotations

import os

import numpy as np

from dualmode.conventions import apply_affine

from .atomic import atomic_path

#: Display colour per fused channel, shared by ``qc.png``, ``fused.ome.tif`` and napari.
CHANNEL_COLORS = {"13C": "#FF00FF", "optical": "#00FF00"}

#: Rendering resolution and page size (pixels) of ``qc.png``.
DPI = 150
WIDTH, HEIGHT = 1920, 1010
_BOX = 370  # panel box (pixels)
_COLS = [40 + i * 470 for i in range(4)]
_ROWS = [560, 80]  # bottom edge of the top and bottom rows

def h_window(h: np.ndarray, sigma: float) -> tuple[float, float]:
    """Display window of the 13C image: 3 noise σ (nothing below is detectable) to twice the typical particle.

    The upper limit is twice the median of the voxels above 5σ, so one bright particle does
    not hide the others (with a square-root gamma a particle of half that level shows at
    70 % brightness); without voxels above 5σ it is the image maximum. ``qc.png`` and the
    napari plugin use this window.

    Examples
    --------
    >>> h_window(np.array([0.0, 1.0, 10.0, 40.0]), 1.0)
    (3.0, 50.0)
    """
    h = np.asarray(h, float)
    finite = h[np.isfinite(h)]
    lo = 3.0 * float(sigma) if np.isfinite(sigma) and sigma > 0 else 0.0
    bright = finite[finite > 5.0 * sigma] if lo > 0 else finite[:0]
    hi = 2.0 * float(np.median(bright)) if bright.size else (float(finite.max()) if finite.size else 1.0)
    return lo, max(hi, 2.0 * lo, lo + 1e-12)


def _scale(a: np.ndarray, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    x = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return x ** gamma if gamma != 1.0 else x


def _mip(a: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a)).max(axis=2)


def _extent(shape, affine) -> list[float]:
    """imshow extent in world mm for an axis-aligned grid (x right, y up)."""
    lo = apply_affine(affine, np.array([[-0.5, -0.5, 0]]))[0]
    hi = apply_affine(affine, np.array([[shape[0] - 0.5, shape[1] - 0.5, 0]]))[0]
    return [lo[0], hi[0], lo[1], hi[1]]


def fused_rgb(h: np.ndarray, optical: np.ndarray, sigma: float) -> np.ndarray:
    """``[x, y, 3]`` overlay: 13C magenta over optical green, both scaled so particles show in each.

    13C runs through :func:`h_window` with a square-root gamma; the optics runs
    linearly from its 1st percentile to its maximum. The channels add in their display
    colours: a voxel where both modes see a particle is white-pink.
    """
    lo, hi = h_window(h, sigma)
    c = _scale(h, lo, hi, 0.5)
    finite = optical[np.isfinite(optical)]
    o_lo, o_hi = (np.percentile(finite, [1, 100]) if finite.size else (0.0, 1.0))
    o = _scale(optical, o_lo, o_hi)
    rgb = c[..., None] * _hex(CHANNEL_COLORS["13C"]) + o[..., None] * _hex(CHANNEL_COLORS["optical"])
    return np.clip(rgb, 0, 1)


def _hex(color: str) -> np.ndarray:
    return np.array([int(color.lstrip("#")[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])


def _box(row: int, col: int) -> tuple[int, int, int, int]:
    return (_COLS[col], _ROWS[row], _BOX, _BOX)


def _image_panel(page, arr_xy, ext, row, col, title, cmap="magma", window=None, gamma=1.0, label="",
                 unit="mm", directions=("R", "A")):
    """Paint one windowed image with its title, colour bar, frame and scale bar."""
    from .qc_canvas import colorize

    lo, hi = window if window is not None else (0.0, float(np.max(arr_xy)) or 1.0)
    panel = page.paint(colorize(arr_xy, cmap, lo, hi, gamma), ext, _box(row, col))
    page.frame(panel)
    page.colorbar(panel, cmap, lo, hi, label, gamma)
    page.title(panel, title)
    page.scalebar(panel, unit, directions)
    return panel


def _mri_row(page, images, pol, lock, ext, mri_xyz) -> None:
    """S+, S-, H (from 3 sigma, square root, detections circled), B: one shared window for S+-, B."""
    first_pos, first_neg = np.flatnonzero(pol > 0), np.flatnonzero(pol < 0)
    shots = [(images[first_pos[0]] if first_pos.size else None, "S+ (first + shot)"),
             (images[first_neg[0]] if first_neg.size else None, "S- (first - shot)")]
    raw_max = max([_mip(a).max() for a, _ in shots if a is not None] + [_mip(lock.background).max(), 1e-12])
    for col, (a, title) in enumerate(shots):
        if a is None:
            page.text(_COLS[col] + _BOX / 2, _ROWS[0] + _BOX / 2, title + ": none", ha="center")
            continue
        _image_panel(page, _mip(a), ext, 0, col, title, window=(0.0, raw_max))
    h = _mip(lock.signal)
    panel = _image_panel(page, h, ext, 0, 2, f"H: background-free 13C (SNR {lock.snr:.0f})",
                         window=h_window(h, lock.noise_sigma), gamma=0.5, label="3 sigma to 2x particle, sqrt")
    page.markers(panel, mri_xyz, s=70, facecolors="none", edgecolors="cyan", linewidths=0.8)
    _image_panel(page, _mip(lock.background), ext, 0, 3, "B: sign-invariant background", window=(0.0, raw_max))


def _optical_panel(page, optics, nv_lockin, optical_xyz=None) -> None:
    sx, sy = optics.spacing_um[:2]
    nx, ny = optics.data.shape[:2]
    ext = [-sx / 2, (nx - 0.5) * sx, -sy / 2, (ny - 0.5) * sy]
    img = optics.data.max(axis=2)
    lo, hi = np.percentile(img, [1, 99.8])
    title = "optical NV lock-in (own frame)" if nv_lockin is not None else "optical (own frame)"
    panel = _image_panel(page, img, ext, 1, 0, title, cmap="gray", window=(lo, hi), unit="um",
                         directions=("+x", "+y"))
    page.markers(panel, optical_xyz, s=50, facecolors="none", edgecolors="lime", linewidths=0.7)


def unmatched_reasons(reg, mri_shape, mri_affine) -> dict[str, np.ndarray]:
    """Positions (RAS mm) of unmatched particles, grouped by the reason they have no partner.

    ``"13C only: no optical particle within tolerance"`` for MRI detections without a
    pair; optical detections without a pair are ``"optical, outside the MRI field"`` when
    the registration maps them off the MRI grid, else ``"optical only: no 13C detection"``
    (the 13C signal there is below the detection threshold).
    """
    pairs = np.asarray(reg.pairs, dtype=int).reshape(-1, 2)
    mri = reg.mri_particles.xyz
    lone_m = np.setdiff1d(np.arange(len(mri)), pairs[:, 1])
    out = {"13C only: no optical particle within tolerance": mri[lone_m]}
    op = reg.optical_particles.xyz
    lone_o = np.setdiff1d(np.arange(len(op)), pairs[:, 0])
    mapped = apply_affine(reg.optical_to_mri, op[lone_o]) if len(lone_o) else np.zeros((0, 3))
    ijk = apply_affine(np.linalg.inv(mri_affine), mapped) if len(mapped) else np.zeros((0, 3))
    inside = np.all((ijk[:, :2] >= -0.5) & (ijk[:, :2] <= np.asarray(mri_shape[:2]) - 0.5), axis=1)
    out["optical, outside the MRI field"] = mapped[~inside]
    out["optical only: no 13C detection"] = mapped[inside]
    return out


_UNMATCHED_STYLE = {"13C only": ("x", "orange"), "optical, outside": ("s", "yellow"), "optical only": ("d", "red")}


def _matches_panel(page, h, sigma, ext, reg, shape, affine) -> None:
    title = f"matches: {reg.matched} ({'mirrored' if reg.mirrored else 'not mirrored'})"
    panel = _image_panel(page, h, ext, 1, 2, title, cmap="gray", window=h_window(h, sigma), gamma=0.5)
    pairs = np.asarray(reg.pairs, dtype=int).reshape(-1, 2)
    m = reg.mri_particles.xyz[pairs[:, 1]]
    o = apply_affine(reg.optical_to_mri, reg.optical_particles.xyz[pairs[:, 0]]) if len(pairs) else m
    page.markers(panel, m, s=70, facecolors="none", edgecolors="cyan", linewidths=0.8, label="13C, matched")
    page.markers(panel, o, s=50, marker="+", c="lime", linewidths=0.8, label="optical, mapped")
    for reason, xyz in unmatched_reasons(reg, shape, affine).items():
        if len(xyz):
            marker, color = next(v for k, v in _UNMATCHED_STYLE.items() if reason.startswith(k))
            face = {"facecolors": "none", "edgecolors": color} if marker != "x" else {"c": color}
            page.markers(panel, xyz, s=36, marker=marker, linewidths=0.9, label=f"{reason} ({len(xyz)})", **face)
    page.legend(_COLS[3], _ROWS[1], "lower left")


def _numbers(lock, pol, reg) -> list[str]:
    lines = [f"noise sigma (H): {lock.noise_sigma:.3g}", f"SNR: {lock.snr:.1f}",
             f"shots: {''.join('+' if p > 0 else '-' for p in pol)}"]
    if reg is not None:
        lines += [f"registration: {reg.method}", f"matched: {reg.matched}"]
        if len(reg.residuals_mm):
            lines.append(f"median residual: {np.median(reg.residuals_mm) * 1000:.0f} um")
        if reg.tre_loo_mm is not None:
            lines.append(f"LOO TRE: {reg.tre_loo_mm * 1000:.0f} um")
    return lines


def render_qc(result, failure: dict | None = None):
    """The QC page of a :class:`~dualmode.pipeline.FolderResult` (a :class:`~dualmode.qc_canvas.Page`).

    ``failure`` (for a folder whose registration failed) holds ``mri_xyz`` (RAS mm),
    ``optical_xyz`` (µm), optionally ``hypothesis`` (optical µm -> MRI mm, 4 x 4) and
    ``error``; see :func:`failure_details`.
    """
    from .qc_canvas import Page

    acq, lock, reg = result.acquisition, result.lockin, result.registration
    pol = np.asarray(acq.polarization)
    ext = _extent(result.c13.shape, result.c13.affine)
    page = Page(WIDTH, HEIGHT, DPI)
    mri_xyz = reg.mri_particles.xyz if reg is not None else failure.get("mri_xyz", np.zeros((0, 3)))
    _mri_row(page, result.shots, pol, lock, ext, mri_xyz)
    h = _mip(lock.signal)
    if reg is not None:
        _optical_panel(page, result.optics, result.nv_lockin)
        panel = page.paint(fused_rgb(h, _mip(result.optical_on_mri.data), lock.noise_sigma),
                           ext, _box(1, 1))
        page.frame(panel)
        page.title(panel, "fused: 13C magenta, optical green")
        page.scalebar(panel, "mm")
        _matches_panel(page, h, lock.noise_sigma, ext, reg, result.c13.shape, result.c13.affine)
        page.text(_COLS[3], _ROWS[1] + _BOX, "\n".join(_numbers(lock, pol, reg)), va="top", family="monospace",
                  fontsize=8)
    else:
        _failure_panels(page, result, failure, h, ext)
    ok = reg is not None
    flags = (result.report or {}).get("flags") or []  # e.g. a planned acquisition the optics cannot explain
    status = ("registered and fused" if ok else "REGISTRATION FAILED") + (
        f"; FLAGGED ({len(flags)}, see report.json): {flags[0][:60]}..." if flags else "")
    page.text(WIDTH / 2, HEIGHT - 8, f"{result.name}: " + status,
              ha="center", va="top", fontsize=11, color="black" if ok and not flags else "firebrick")
    return page


def _failure_panels(page, result, failure: dict, h, ext) -> None:
    """Bottom row of a failed folder: optical detections, 13C detections + best hypothesis, error."""
    import textwrap

    lock = result.lockin
    opt_xyz = failure.get("optical_xyz")
    if result.optics is not None:
        _optical_panel(page, result.optics, result.nv_lockin, opt_xyz)
    mri_xyz = failure.get("mri_xyz", np.zeros((0, 3)))
    hyp = failure.get("hypothesis")
    title = "13C detections, best rejected hypothesis" if hyp is not None else "13C detections (no hypothesis)"
    panel = _image_panel(page, h, ext, 1, 1, title, cmap="gray", window=h_window(h, lock.noise_sigma), gamma=0.5)
    page.markers(panel, mri_xyz, s=70, facecolors="none", edgecolors="cyan", linewidths=0.8,
                 label=f"13C detections ({len(mri_xyz)})")
    if hyp is not None and opt_xyz is not None and len(opt_xyz):
        page.markers(panel, apply_affine(np.asarray(hyp, float), opt_xyz), s=50, marker="+", c="lime",
                     linewidths=0.8, label=f"optical under the best rejected hypothesis ({failure.get('label')}, "
                                           f"{failure.get('matched')} pairs)")
    if page.legend_entries:
        page.legend(_COLS[2], _ROWS[1] + _BOX, "upper left")
    error = failure.get("error") or result.registration_error or ""
    lines = _numbers(lock, np.asarray(result.acquisition.polarization), None)
    lines += ["", f"optical detections: {len(opt_xyz) if opt_xyz is not None else 'no optics'}",
              f"13C detections: {len(mri_xyz)}", "", "registration error:"] + textwrap.wrap(error, 80)
    page.text(_COLS[2], _ROWS[1] + _BOX - 70, "\n".join(lines), va="top", family="monospace", fontsize=8,
              color="firebrick")


def failure_details(result) -> dict:
    """What a failed registration had to work with: detections of both modes, the best rejected hypothesis.

    From ``result.registration_best`` (:class:`dualmode.registration.RegistrationError` ``.best``)
    when the registration got as far as a hypothesis; otherwise the registration's own
    detectors are run with their defaults on the 13C and optical images.
    """
    best = getattr(result, "registration_best", None) or {}
    details = {"error": result.registration_error, "hypothesis": best.get("optical_to_mri"),
               "label": best.get("label"), "matched": best.get("matched"),
               "mri_xyz": np.asarray(best.get("mri_xyz_mm", np.zeros((0, 3))), float).reshape(-1, 3),
               "optical_xyz": (np.asarray(best["optical_xyz_um"], float).reshape(-1, 3)
                               if "optical_xyz_um" in best else None)}
    if best:
        return details
    from dualmode.registration import detect_mri_particles, detect_optical_particles

    try:
        details["mri_xyz"] = detect_mri_particles(result.c13.data, result.c13.affine, result.lockin.noise_sigma).xyz
        if result.optics is not None:
            details["optical_xyz"] = detect_optical_particles(
                result.optics.data, result.optics.spacing_um,
                diameter_um=result.acquisition.particle_diameter_um).xyz
    except (ValueError, RuntimeError):  # a degenerate image: the picture still shows the 13C row
        pass
    return details


def write_qc_png(path: str | os.PathLike, result) -> None:
    """Render the QC page of ``result`` to ``path`` (PNG, 150 dpi, written atomically).

    Parameters
    ----------
    path : path-like
    result : dualmode.pipeline.FolderResult
        Registered or not: a folder whose registration failed gets the failure layout
        (13C row, detections of both modes, the best rejected hypothesis, the error).

    Examples
    --------
    >>> write_qc_png("out/demo/qc.png", process_folder("demo"))  # doctest: +SKIP
    """
    failure = None if result.registration is not None else failure_details(result)
    page = render_qc(result, failure)
    with atomic_path(path) as tmp:
        page.save(tmp)
