"""Acceleration reachable by optics-prior (support-constrained) reconstruction versus particle count.

Scene: ``P`` point-like particles on a 64 x 64 grid (amplitudes 0.5-1.5, small phases),
optical positions jittered by < 0.5 voxel (registration error), support = optical positions
dilated by a 1.5-voxel disk (3 x 3 voxels per particle). k-space samples chosen by
:func:`dualmode.recon.optics_prior.choose_kspace_samples` (greedy D-optimal or
variable-density random with a conditioning check), amplitudes by support-constrained least
squares. Acceleration ``R = 4096 / m``; reported is the largest ``R`` (``m = ceil(c s)`` for a ladder
of multipliers ``c >= 1`` of the support size ``s``) whose median NRMSE over ``trials`` scenes is
<= 0.1 (NRMSE over the whole image).

Point sampling (every k-space point chosen freely) fits phase-encoded (CSI-like) acquisitions;
the "lines" column chooses phase-encode lines along j with the readout along i acquired in full
(:func:`dualmode.recon.optics_prior.choose_phase_encodes`), the Cartesian case, where
``R = 64 / n_lines`` and the bound is the largest number of support voxels on one readout position.

Two noise definitions (complex Gaussian):
  * data SNR 20: noise sigma per k-space sample = rms(k-space signal) / 20 (the usual
    "add noise at SNR" of compressed-sensing studies);
  * image SNR 20: noise sigma of the fully sampled image = peak amplitude / 20; the
    least-squares noise per unknown then grows like ``sqrt(R)`` whatever the design, so
    NRMSE <= 0.1 needs ``R <= 400 P ||a||^2 / (100 s)`` at best (SNR-limited, not
    support-limited).

Run: ``python benchmarks/optics_prior_table.py [--quick]``; prints a markdown table.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small dense problems: threads only contend

import numpy as np  # noqa: E402

from dualmode.conventions import fft_centered  # noqa: E402
from dualmode.recon.optics_prior import (  # noqa: E402
    choose_kspace_samples, choose_phase_encodes, condition_number, line_coords, support_lstsq, support_mask,
)

N = 64
R_LADDER = [1.25, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 12, 16]
MULTIPLIERS = [1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64]


def scene(n_particles: int, seed: int, dilation: float = 1.5):
    rng = np.random.default_rng(seed)
    flat = rng.choice((N - 8) ** 2, n_particles, replace=False)
    pos = np.stack(np.unravel_index(flat, (N - 8, N - 8)), axis=1) + 4
    x = np.zeros((N, N, 1), complex)
    x[pos[:, 0], pos[:, 1], 0] = rng.uniform(0.5, 1.5, n_particles) * np.exp(1j * rng.uniform(-0.3, 0.3, n_particles))
    optical = pos + np.clip(rng.normal(0, 0.3, pos.shape), -0.49, 0.49)
    support = support_mask(x.shape, optical, dilation=dilation)
    noise = (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)
    return x, support, noise


def nrmse_at(x, support, noise, coords, sigma):
    k = fft_centered(x)
    idx = tuple((coords + N // 2).astype(int).T) + (np.zeros(len(coords), int),)
    y = k[idx] + sigma * noise[idx]
    est = support_lstsq(y, coords, support)
    return float(np.linalg.norm(est - x) / np.linalg.norm(x))


def _median_nrmse(scenes, m, method, snr_kind, designs):
    full = (np.argwhere(np.ones((N, N), bool)) - N // 2).astype(float)
    errs, conds = [], []
    for t, (x, support, noise) in enumerate(scenes):
        if m == N * N:
            coords = full
        elif method == "greedy":  # greedy designs are nested: compute once, take prefixes
            if t not in designs or len(designs[t]) < m:
                designs[t] = choose_kspace_samples(support, min(N * N, 2 * m), method="greedy")
            coords = designs[t][:m]
        else:
            coords = choose_kspace_samples(support, m, method="random", max_tries=5, seed=t)
        k_rms = np.sqrt(np.mean(np.abs(fft_centered(x)) ** 2))
        sigma = k_rms / 20 if snr_kind == "data" else np.abs(x).max() / 20 * N
        errs.append(nrmse_at(x, support, noise, coords, sigma))
        conds.append(condition_number(coords, support) if m < N * N else 1.0)
    return float(np.median(errs)), float(np.median(conds))


def r_max(n_particles: int, method: str, snr_kind: str, trials: int,
          dilation: float = 1.5) -> tuple[float | None, float, int, float]:
    """Largest R = N^2 / m, m = ceil(c s) over the multipliers, with median NRMSE <= 0.1.

    Returns ``(R or None, NRMSE at that R (or at R = 1 if never reached), s, cond(A_S))``.
    The NRMSE falls with ``m``, so full sampling is tried first: if it fails, nothing passes.
    """
    scenes = [scene(n_particles, 1000 * n_particles + t, dilation) for t in range(trials)]
    s_max = max(int(sc[1].sum()) for sc in scenes)
    s = int(np.median([sc[1].sum() for sc in scenes]))
    designs = {}
    err_full, _ = _median_nrmse(scenes, N * N, method, snr_kind, designs)
    if err_full > 0.1:
        return None, err_full, s, float("nan")
    ms = {int(np.ceil(c * s_max)) for c in MULTIPLIERS} | {int(np.ceil(N * N / r)) for r in R_LADDER}
    for m in sorted(m for m in ms if s_max <= m < N * N):
        err, cond = _median_nrmse(scenes, m, method, snr_kind, designs)
        if err <= 0.1:
            return N * N / m, err, s, cond
    return 1.0, err_full, s, 1.0


def r_max_lines(n_particles: int, trials: int) -> tuple[float, float]:
    """Largest ``R = N / n_lines`` (full readout along i, greedy phase encodes along j), data SNR 20."""
    scenes = [scene(n_particles, 1000 * n_particles + t) for t in range(trials)]
    start = max(int(sc[1].sum(axis=(1, 2)).max()) for sc in scenes)
    for n_lines in range(start, N + 1):
        errs = []
        for x, support, noise in scenes:
            coords = line_coords(choose_phase_encodes(support, n_lines, readout_axis=0), x.shape, 0)
            sigma = np.sqrt(np.mean(np.abs(fft_centered(x)) ** 2)) / 20
            errs.append(nrmse_at(x, support, noise, coords, sigma))
        if np.median(errs) <= 0.1:
            return N / n_lines, float(np.median(errs))
    return 1.0, float("nan")


def main(quick: bool = False) -> str:
    counts = [5, 10, 20] if quick else [5, 10, 20, 50]
    trials = 2 if quick else 3
    lines = ["| particles | support voxels | R greedy (data SNR 20) | NRMSE | cond(A_S) | "
             "R VD-random (data SNR 20) | R greedy lines, full readout (data SNR 20) | "
             "R greedy (image SNR 20) | R greedy (image SNR 20, exact support) |",
             "|---|---|---|---|---|---|---|---|---|"]
    t0 = time.perf_counter()
    for p in counts:
        rg, eg, s, cg = r_max(p, "greedy", "data", trials)
        rr, _, _, _ = r_max(p, "random", "data", trials)
        ri, ei, _, _ = r_max(p, "greedy", "image", trials)
        img = f"not reached (NRMSE {ei:.2f} at R = 1)" if ri is None else f"{ri:.1f} (NRMSE {ei:.3f})"
        rx, ex, _, _ = r_max(p, "greedy", "image", trials, dilation=0.0)
        exact = f"not reached (NRMSE {ex:.2f} at R = 1)" if rx is None else f"{rx:.1f} (NRMSE {ex:.3f})"
        rand = "not reached" if rr is None else f"{rr:.1f}"
        rl, el = r_max_lines(p, trials)
        lines.append(f"| {p} | {s} | {rg:.1f} | {eg:.3f} | {cg:.1f} | {rand} | {rl:.1f} (NRMSE {el:.3f}) "
                     f"| {img} | {exact} |")
    lines.append(f"\n64 x 64 grid, {trials} scenes per row (median), 3 x 3-voxel support per particle; "
                 f"{time.perf_counter() - t0:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
