"""Optics-guided (planned) acquisition against full sampling and compressed sensing, same sample count.

Scene: ``P`` spheres (100-300 um) at random sub-voxel positions in a 2D 64 x 64 slice
(12.8 mm FOV, 0.2 mm voxels). k-space is the *analytic* Fourier transform of the spheres
(:func:`dualmode.simulate.analytic.spectrum`, not a dualmode transform), sampled one point
per excitation (single-point imaging) at the Cartesian grid points each method chooses.
Hyperpolarization: every method at ``m`` samples uses the same constant flip angle spending
25 % of the polarization, so each sample carries
:func:`dualmode.recon.planned.planned_sample_weights` (about ``sqrt(4096 / m)`` times the signal
of a full acquisition); complex noise per sample is fixed so that the fully sampled image has
SNR 20 (peak / sigma).

Methods at ``m = 4096 / R`` samples:

* **full**: ``R = 1``, inverse FFT, particle amplitude = sum over a disc of radius ``r + 1.5`` voxels
  (the image-based estimate a user makes); **full, particle fit**: the same data, amplitudes by the
  parametric fit at the true positions (the best full sampling can do);
* **CS dualmode**: variable-density Poisson-disc points, L1-wavelet (db4, FISTA 150 iterations),
  the best of three lambdas (0.01, 0.03, 0.1 of the peak) per R (oracle choice, favourable to CS), amplitudes as for full;
* **CS BART**: ``bart pics -l1`` with the same samples and lambdas (if ``bart`` is on PATH);
* **planned**: support from the optical positions displaced by the registration error (0, 0.25,
  0.5 voxel, random direction), greedy D-optimal design, 10 % check samples, parametric particle
  fit (:mod:`dualmode.recon.particle_fit`, nominal diameter 200 um refined); amplitudes fitted.

NRMSE of the particle amplitudes (truth: integrated signal of each sphere, voxel units), median
over ``trials`` scenes. Reported: the largest R of the ladder with median NRMSE <= 0.1.

Run: ``python benchmarks/optics_prior_table.py [--quick]`` (``--quick``: one scene per point);
prints markdown tables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small dense problems: threads only contend
if not __package__:  # run as a script: make ``benchmarks`` importable (BART's .cfl helpers)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from dualmode.conventions import ifft_centered  # noqa: E402
from dualmode.recon.optics_prior import choose_kspace_samples, support_mask  # noqa: E402
from dualmode.recon.particle_fit import fit_particles  # noqa: E402
from dualmode.recon.planned import planned_flip_angle, planned_sample_weights  # noqa: E402

N, FOV = 64, 12.8
VOX = FOV / N
LADDER = [1, 2, 4, 8, 12, 16, 20, 30, 40, 60, 80, 120]
SNR = 20.0


def scene(n_particles: int, seed: int):
    """Sphere centres (voxel indices), diameters (mm), truth amplitudes and the analytic spectrum function."""
    from dualmode.simulate.analytic import make_bodies, spectrum

    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n_particles:
        p = rng.uniform(4, N - 5, 2)
        if not pos or np.min(np.linalg.norm(np.array(pos) - p, axis=1)) > 2.5:
            pos.append(p)
    pos = np.c_[np.array(pos), np.zeros(n_particles)]
    diam_um = rng.uniform(100, 300, n_particles)
    centres_mm = (pos - np.array([N // 2, N // 2, 0])) * np.array([VOX, VOX, 1.0])
    bodies = make_bodies(rng, centres_mm, diam_um, np.ones(n_particles), flat=True)
    amp = bodies.particle_volume(n_particles) / (VOX * VOX * 1.0)

    def kspace(coords):
        k_mm = np.c_[coords / FOV, np.zeros(len(coords))]
        return spectrum(bodies, k_mm) / (VOX * VOX * 1.0)

    full = kspace(_grid())
    peak = np.abs(ifft_centered(full.reshape(N, N, 1))).max()
    return pos, diam_um / 1000.0, amp / peak, lambda c: kspace(c) / peak, rng


def _grid():
    ax = np.arange(N) - N // 2
    return np.stack(np.meshgrid(ax, ax, indexing="ij"), axis=-1).reshape(-1, 2).astype(float)


def _noisy(kfun, coords, rng):
    m = len(coords)
    g = planned_sample_weights(m, planned_flip_angle(m), N * N)
    sigma = N / SNR  # per component: image noise 1/SNR at full sampling, peak 1
    noise = sigma * (rng.standard_normal(m) + 1j * rng.standard_normal(m)) / np.sqrt(2)
    return g * kfun(coords) + noise, g


def _window_amplitudes(image, pos, diam):
    gi, gj = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    out = []
    for p, d in zip(pos, diam):
        win = (gi - p[0]) ** 2 + (gj - p[1]) ** 2 <= (d / 2 / VOX + 1.5) ** 2
        out.append(abs(image[..., 0][win].sum()))
    return np.array(out)


def _cs_images(y, g, mask_idx, lams, bart):
    from dualmode.recon.iterative import l1_wavelet_recon
    from dualmode.recon.linop import FFTOp

    data = np.zeros((N, N, 1), complex)
    data[mask_idx] = y / g
    mask = np.zeros((N, N, 1))
    mask[mask_idx] = 1.0
    op = FFTOp((N, N, 1), mask=mask)  # lam in image units: dualmode's lam * N^2 is BART's -r lam
    imgs = {"CS dualmode": [l1_wavelet_recon(op, data, lam * N * N, max_iter=150) for lam in lams]}
    if bart:
        imgs["CS BART"] = [_bart(data[..., 0], mask[..., 0], lam) for lam in lams]
    return imgs


def _bart(data, mask, lam):
    from benchmarks.bench_cs import read_cfl, write_cfl

    with tempfile.TemporaryDirectory() as wd:
        write_cfl(os.path.join(wd, "ksp"), (data / N).reshape(N, N, 1, 1))
        write_cfl(os.path.join(wd, "sens"), np.ones((N, N, 1, 1)))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(["bart", "pics", "-l1", "-r", str(lam), "-i", "150", "-w", "1", os.path.join(wd, "ksp"),
                        os.path.join(wd, "sens"), os.path.join(wd, "out")], check=True, capture_output=True, env=env)
        return read_cfl(os.path.join(wd, "out")).reshape(N, N, 1)


def _planned(pos, kfun, rng, m, optical, design):
    """Amplitudes from the first ``m - check`` samples of the nested greedy ``design`` (prefixes are greedy)."""
    coords = design[:m - max(8, int(round(0.1 * m)))]
    y, g = _noisy(kfun, coords, rng)
    amp, _, _ = fit_particles(y, coords, (N, N, 1), (VOX, VOX, 1.0), optical, np.full(len(pos), 0.2),
                              sample_weights=g)
    return np.abs(amp)


def _designs(pos, reg_errors, seed, m_max):
    """Per registration error: optical positions (displaced in a random direction) and a greedy design."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in reg_errors:
        angle = rng.uniform(0, 2 * np.pi, len(pos))
        optical = pos[:, :2] + e * np.c_[np.cos(angle), np.sin(angle)]
        support = support_mask((N, N, 1), optical, dilation=1.0 + e)
        out[e] = optical, choose_kspace_samples(support, m_max, method="greedy")
    return out


def nrmse_table(n_particles: int, trials: int, reg_errors, lams, bart) -> dict:
    """Median NRMSE per method and R (planned from R = 4 up: greedy designs beyond 1024 samples add nothing)."""
    from dualmode.recon.trajectory import poisson_disc_mask

    errs = {r: {} for r in LADDER}
    for t in range(trials):
        pos, diam, amp, kfun, rng = scene(n_particles, 1000 * n_particles + t)
        designs = _designs(pos, reg_errors, t, N * N // 4)
        for r in LADDER:
            m = int(round(N * N / r))
            if r == 1:
                y, g = _noisy(kfun, _grid(), rng)
                img = ifft_centered((y / g).reshape(N, N, 1))
                errs[r].setdefault("full", []).append(_nrmse(_window_amplitudes(img, pos, diam), amp))
                fitted, _, _ = fit_particles(y, _grid(), (N, N, 1), (VOX, VOX, 1.0), pos, np.full(len(pos), 0.2),
                                             sample_weights=g)
                errs[r].setdefault("full, particle fit", []).append(_nrmse(np.abs(fitted), amp))
                continue
            idx = np.nonzero(poisson_disc_mask((N, N), r, calib=(4, 4), seed=t))
            y, g = _noisy(kfun, np.stack(idx, axis=1).astype(float) - N // 2, rng)
            for name, imgs in _cs_images(y, g, idx + (np.zeros(len(idx[0]), int),), lams, bart).items():
                errs[r].setdefault(name, []).append(min(_nrmse(_window_amplitudes(i, pos, diam), amp) for i in imgs))
            for e, (optical, design) in designs.items():
                if r >= 4 and m - max(8, int(round(0.1 * m))) >= 4 * n_particles:
                    errs[r].setdefault(f"planned {e}", []).append(_nrmse(_planned(pos, kfun, rng, m, optical, design),
                                                                         amp))
            print(f"{n_particles} particles, scene {t}, R {r}: done", file=sys.stderr, flush=True)
    return {r: {k: float(np.median(v)) for k, v in d.items()} for r, d in errs.items()}


def _nrmse(est, ref):
    return float(np.linalg.norm(est - ref) / np.linalg.norm(ref))


def main(quick: bool = False) -> str:
    counts = [5, 10, 20, 50]
    trials = 1 if quick else 3
    reg_errors = [0.0, 0.25, 0.5]
    lams = [0.01, 0.03, 0.1]
    bart = shutil.which("bart") is not None
    t0 = time.perf_counter()
    methods = ["full", "full, particle fit", "CS dualmode"] + (["CS BART"] if bart else []) + [f"planned {e}" for e in reg_errors]
    reach = ["| particles | " + " | ".join(f"R max {m}" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    detail = []
    for p in counts:
        tab = nrmse_table(p, trials, reg_errors, lams, bart)
        best = {m: max([r for r in LADDER if tab[r].get(m, 9) <= 0.1], default=None) for m in methods}
        for m in ("full", "full, particle fit"):
            best[m] = 1 if tab[1][m] <= 0.1 else None
        reach.append(f"| {p} | " + " | ".join("not reached" if best[m] is None else f"{best[m]}" for m in methods)
                     + " |")
        detail.append(f"\n{p} particles, median NRMSE of the amplitudes:\n\n| R | " + " | ".join(methods) + " |")
        detail.append("|---|" + "---|" * len(methods))
        for r in LADDER:
            detail.append(f"| {r} | " + " | ".join(f"{tab[r][m]:.3f}" if m in tab[r] else "-" for m in methods) + " |")
    foot = (f"\n64 x 64, analytic spheres 100-300 um, full-sampling image SNR {SNR:g}, {trials} scenes per point "
            f"(median); planned columns: registration error in voxels; {time.perf_counter() - t0:.0f} s.")
    return "\n".join(reach) + "\n" + "\n".join(detail) + foot


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
