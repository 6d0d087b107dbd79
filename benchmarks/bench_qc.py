"""``qc.png`` rendering: dualmode's composed page against a conventional matplotlib subplot grid.

Case ``qc.png 2D demo folder``: the demo folder (64 x 64, modulated optics) analysed once,
then its QC figure rendered to PNG. ``dualmode`` = :func:`dualmode.qc.write_qc_png` (panels
through colour lookup tables pasted into one Pillow page, text and markers drawn once with
``ImageDraw``, no matplotlib; 1920 x 1010 at 150 dpi); ``matplotlib subplot grid``
= the same eight panels drawn the usual way (``plt.subplots``, ``imshow`` per panel, colour
bars, ``constrained_layout``) at the same size and dpi, as ``qc.png`` was drawn before
(issue 18: 1.07 s of a 1.37 s folder). Times are the best of alternating rounds; ``ratio``
is the median per-round ratio.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from . import interleaved_times, row

SUITE = "qc"


def _subplot_grid(path, result) -> None:
    """The conventional figure: 2 x 4 subplots, imshow + colour bar each, constrained layout, 150 dpi."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dualmode.qc import fused_rgb, h_window

    lock, pol = result.lockin, np.asarray(result.acquisition.polarization)
    mip = lambda a: np.abs(np.asarray(a)).max(axis=2)  # noqa: E731
    fig, axes = plt.subplots(2, 4, figsize=(12.8, 6.73), constrained_layout=True)
    panels = [(result.shots[np.flatnonzero(pol > 0)[0]], "S+"), (result.shots[np.flatnonzero(pol < 0)[0]], "S-"),
              (lock.signal, "H"), (lock.background, "B")]
    for ax, (a, title) in zip(axes[0], panels):
        window = h_window(mip(a), lock.noise_sigma) if title == "H" else (0, mip(a).max())
        fig.colorbar(ax.imshow(mip(a).T, origin="lower", cmap="magma", vmin=window[0], vmax=window[1]), ax=ax)
        ax.set_title(title)
    fig.colorbar(axes[1, 0].imshow(result.optics.data.max(axis=2).T, origin="lower", cmap="gray"), ax=axes[1, 0])
    h = mip(lock.signal)
    axes[1, 1].imshow(fused_rgb(h, mip(result.optical_on_mri.data), lock.noise_sigma).transpose(1, 0, 2),
                      origin="lower")
    axes[1, 2].imshow(h.T, origin="lower", cmap="gray")
    xyz = result.registration.mri_particles.xyz
    axes[1, 2].plot(xyz[:, 0], xyz[:, 1], "o", mfc="none", mec="c")
    axes[1, 3].axis("off")
    axes[1, 3].text(0, 1, f"SNR {lock.snr:.1f}", va="top", family="monospace")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run(quick: bool = False) -> list[dict]:
    from dualmode.pipeline import analyse_folder
    from dualmode.qc import write_qc_png
    from dualmode.simulate import SimulationConfig, simulate_folder

    case = "qc.png 2D demo folder"
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "demo")
        simulate_folder(folder, SimulationConfig(seed=7, background_ratio=10.0, snr=20.0, rotation_deg=20.0,
                                                 optical_frames=8))
        result = analyse_folder(folder)
        if result.registration is None:
            return [row(SUITE, case, "dualmode", None, note=f"demo not registered: {result.registration_error}")]
        fns = {"dualmode": lambda: write_qc_png(os.path.join(tmp, "a.png"), result),
               "matplotlib subplot grid": lambda: _subplot_grid(os.path.join(tmp, "b.png"), result)}
        best, ratio, _ = interleaved_times(fns, rounds=3 if quick else 7)
    return [row(SUITE, case, name, best[name], ratio=ratio[name], note="1920 x 1010 px, 150 dpi")
            for name in fns]
