"""``qc.png``: one picture a person reads at a glance.

Top row: first + shot, first - shot, background-free 13C (H), background (B).
Bottom row: optical image, optics resampled on the MRI grid with 13C overlaid,
matched particles (MRI centroids vs mapped optical centroids). 3D data are shown as
maximum-intensity projections along z. Images are drawn with x to the right and y
up (RAS: right/anterior), as ``imshow(a.T, origin="lower")``.
"""

from __future__ import annotations

import numpy as np

from dualmode.conventions import apply_affine

from .atomic import atomic_path


def _mip(a: np.ndarray) -> np.ndarray:
    return np.abs(a).max(axis=2)


def _extent(shape, affine):
    """imshow extent in world mm for an axis-aligned grid (x right, y up)."""
    lo = apply_affine(affine, np.array([[-0.5, -0.5, 0]]))[0]
    hi = apply_affine(affine, np.array([[shape[0] - 0.5, shape[1] - 0.5, 0]]))[0]
    return [lo[0], hi[0], lo[1], hi[1]]


def write_qc_png(path, images, polarization, lock, optics, optical_on_mri, affine, reg, nv_lockin=None) -> None:
    """Render the QC figure to ``path`` (atomic).

    With an optical lock-in result, the bottom-right panel shows the NV-specific image
    (after) beside the plain fluorescence (before), and the numbers move to the title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pol = np.asarray(polarization)
    ext = _extent(images.shape[1:], affine)
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.4), constrained_layout=True)
    sigma = lock.noise_sigma
    top = [
        (images[np.flatnonzero(pol > 0)[0]], "S+ (first + shot)"),
        (images[np.flatnonzero(pol < 0)[0]], "S- (first - shot)"),
        (lock.signal, f"H = 13C background-free (SNR {lock.snr:.0f})"),
        (lock.background, "B = sign-invariant background"),
    ]
    vmax = max(_mip(a).max() for a, _ in top)
    for ax, (a, title) in zip(axes[0], top):
        im = ax.imshow(_mip(a).T, origin="lower", extent=ext, cmap="magma", vmin=0,
                       vmax=_mip(a).max() if "H =" in title else vmax)
        ax.set_title(title)
        ax.set_xlabel("x (mm, R)")
        ax.set_ylabel("y (mm, A)")
        fig.colorbar(im, ax=ax, shrink=0.7)
    sx, sy = optics.spacing_um[:2]
    opt_ext = [-sx / 2, (optics.data.shape[0] - 0.5) * sx, -sy / 2, (optics.data.shape[1] - 0.5) * sy]
    axes[1, 0].imshow(optics.data.max(axis=2).T, origin="lower", cmap="gray", extent=opt_ext)
    axes[1, 0].set_title("optical (own frame, um)" if nv_lockin is None else "optical before lock-in")
    axes[1, 0].set_xlabel("x (um)")
    o = _mip(optical_on_mri)
    h = _mip(lock.signal)
    rgb = np.zeros((*o.shape, 3))
    rgb[..., 1] = o / (np.percentile(o, 99.9) or 1)
    rgb[..., 0] = rgb[..., 2] = h / (h.max() or 1)
    axes[1, 1].imshow(np.clip(rgb, 0, 1).transpose(1, 0, 2), origin="lower", extent=ext)
    axes[1, 1].set_title("fused: 13C magenta, optical green")
    axes[1, 2].imshow(h.T, origin="lower", extent=ext, cmap="gray", vmin=0, vmax=max(h.max(), 5 * sigma))
    mp = reg.mri_particles.xyz
    axes[1, 2].plot(mp[:, 0], mp[:, 1], "o", mfc="none", mec="c", ms=9, label="13C particles")
    if len(reg.optical_particles.xyz):
        mapped = apply_affine(reg.optical_to_mri, reg.optical_particles.xyz)
        axes[1, 2].plot(mapped[:, 0], mapped[:, 1], "+", color="lime", ms=9, label="optical, mapped")
    axes[1, 2].set_title(f"matches: {reg.matched} ({'mirrored' if reg.mirrored else 'not mirrored'})")
    axes[1, 2].legend(loc="lower right", fontsize=8)
    axes[1, 2].set_xlim(ext[:2])
    axes[1, 2].set_ylim(ext[2:])
    text = [f"noise sigma (H): {sigma:.3g}", f"SNR: {lock.snr:.1f}",
            f"shots: {''.join('+' if p > 0 else '-' for p in pol)}",
            f"registration: {reg.method}", f"matched: {reg.matched}",
            f"median residual: {np.median(reg.residuals_mm) * 1000:.0f} um" if len(reg.residuals_mm) else "",
            f"LOO TRE: {reg.tre_loo_mm * 1000:.0f} um" if reg.tre_loo_mm is not None else ""]
    if nv_lockin is None:
        axes[1, 3].axis("off")
        axes[1, 3].text(0, 1, "\n".join(t for t in text if t), va="top", family="monospace", fontsize=11)
    else:
        axes[1, 3].imshow(nv_lockin.nv.max(axis=2).T, origin="lower", cmap="gray", extent=opt_ext)
        axes[1, 3].set_title("optical NV lock-in (after)")
        axes[1, 3].set_xlabel("x (um)")
        fig.suptitle("   ".join(t for t in text if t), family="monospace", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=70, format="png")
    plt.close(fig)
