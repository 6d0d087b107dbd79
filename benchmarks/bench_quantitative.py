"""Quantitative 13C on analytic k-space: detection (recall, false detections) and amplitudes versus SNR.

Folders from :func:`dualmode.simulate.simulate_folder` (particles' k-space from their exact
Fourier transform, never the project's FFT/NUFFT), reconstructed and locked in by
:func:`dualmode.recon.lockin_recon.lockin_reconstruct` and quantified by
:func:`dualmode.recon.quantify.quantify_image` at the pipeline's default false-alarm rate
(0.1 per image). Per-particle SNR is ``A ||m_d|| / sigma_H`` with the true amplitude ``A``,
the model image ``m_d`` of a sphere of the true diameter and the lock-in's noise ``sigma_H``:
the expected matched-filter statistic of an isolated particle.

Run ``python -m benchmarks.bench_quantitative [--quick] [--write-docs]`` for the markdown
tables (``--write-docs`` rewrites ``docs/quantitative.md``); ``python -m benchmarks --only
bench_quantitative`` gives the timing/accuracy rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

BINS = [(0, 3), (3, 5), (5, 7), (7, 10), (10, 20), (20, np.inf)]


def folder_particles(folder: str, cfg) -> tuple[list[dict], int, float]:
    """Simulate, reconstruct, quantify one folder: per-truth-particle rows, false detections, seconds."""
    import json

    from dualmode.conventions import apply_affine
    from dualmode.io import load_acquisition
    from dualmode.recon.lockin_recon import lockin_reconstruct
    from dualmode.recon.quantify import particle_model, quantify_image
    from dualmode.simulate import simulate_folder

    simulate_folder(folder, cfg)
    with open(os.path.join(folder, "truth.json")) as f:
        truth = json.load(f)
    t0 = time.perf_counter()
    acq = load_acquisition(folder)
    lock, _ = lockin_reconstruct(acq.kspace, acq.polarization)
    aff = acq.kspace.header.affine()
    _, amps, _ = quantify_image(lock.signal, lock.noise_sigma, aff, 0.2)
    seconds = time.perf_counter() - t0
    shape = acq.kspace.header.matrix
    vox = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    parts = [p for p in truth["particles"] if p["in_mri"]]
    true_vox = apply_affine(np.linalg.inv(aff), [p["mri_xyz_mm"] for p in parts]) - np.array(shape) // 2
    dist = np.linalg.norm(amps.position[:, None, :] - true_vox[None], axis=2) if len(amps.position) \
        else np.full((0, len(parts)), np.inf)
    rows = []
    for k, p in enumerate(parts):
        norm = np.linalg.norm(particle_model(shape, vox, true_vox[k], p["diameter_um"] / 1000))
        found = np.flatnonzero(dist[:, k] < 1.5) if len(dist) else []
        row = {"snr": p["amplitude"] * norm / lock.noise_sigma, "amplitude": p["amplitude"], "found": len(found) > 0}
        if len(found):
            j = found[np.argmin(dist[found, k])]
            row.update(estimate=float(amps.amplitude[j]), sigma=float(amps.sigma[j]))
        rows.append(row)
    false = int(np.sum(dist.min(axis=1) >= 1.5)) if len(dist) else 0
    return rows, false, seconds


def collect(seeds, snrs) -> tuple[list[dict], list[int], float]:
    from dualmode.simulate import SimulationConfig

    rows, false, seconds = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, snr in enumerate(snrs):
            for seed in seeds:  # other scenes (and noise) per SNR: every image is independent
                cfg = SimulationConfig(seed=seed + 1000 * i, snr=snr, background_ratio=10.0)
                r, f, s = folder_particles(os.path.join(tmp, f"s{seed}_{snr}"), cfg)
                rows += r
                false.append(f)
                seconds += s
    return rows, false, seconds


def tables(rows: list[dict], false: list[int]) -> str:
    """Markdown: recall and amplitude error per SNR bin, false detections per image, z spread."""
    lines = ["| per-particle SNR | particles | recall | median amplitude error | median bias | z-score std |",
             "|---|---|---|---|---|---|"]
    for lo, hi in BINS:
        sel = [r for r in rows if lo <= r["snr"] < hi]
        if not sel:
            continue
        found = [r for r in sel if r["found"]]
        rel = np.array([r["estimate"] / r["amplitude"] - 1 for r in found])
        z = np.array([(r["estimate"] - r["amplitude"]) / r["sigma"] for r in found])
        label = f"{lo}-{hi}" if np.isfinite(hi) else f">= {lo}"
        lines.append(f"| {label} | {len(sel)} | {len(found) / len(sel):.2f} | "
                     f"{np.median(np.abs(rel)) if len(rel) else float('nan'):.3f} | "
                     f"{np.median(rel) if len(rel) else float('nan'):+.3f} | {np.std(z) if len(z) > 1 else float('nan'):.2f} |")
    found = [r for r in rows if r["found"]]
    z = np.array([(r["estimate"] - r["amplitude"]) / r["sigma"] for r in found])
    strong = [r for r in found if r["snr"] >= 10]
    at5 = [r for r in rows if r["snr"] >= 5]
    lines += ["", f"False detections per image: {np.mean(false):.2f} (max {max(false)}) over {len(false)} images "
              "(stated rate 0.1). "
              f"Recall at SNR >= 5: {np.mean([r['found'] for r in at5]):.3f} ({len(at5)} particles). "
              f"Median |amplitude error| at SNR >= 10: "
              f"{np.median([abs(r['estimate'] / r['amplitude'] - 1) for r in strong]):.3f}. "
              f"z-score std over all detected particles: {np.std(z):.2f} ({len(z)} particles)."]
    return "\n".join(lines)


def run(quick: bool) -> list[dict]:
    seeds = range(1, 3) if quick else range(1, 11)
    rows, false, seconds = collect(seeds, (10.0, 20.0, 40.0))
    at5 = [r for r in rows if r["snr"] >= 5]
    found = [r for r in rows if r["found"]]
    z = np.array([(r["estimate"] - r["amplitude"]) / r["sigma"] for r in found])
    return [{"case": f"2D 64x64 analytic, {len(false)} folders", "tool": "dualmode", "time_s": seconds / len(false),
             "recall_snr5": float(np.mean([r["found"] for r in at5])), "false_per_image": float(np.mean(false)),
             "z_std": float(np.std(z)), "note": "time: lock-in + quantification per folder"}]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    seeds = range(1, 4) if quick else range(1, 11)
    rows, false, _ = collect(seeds, (10.0, 20.0, 40.0))
    text = tables(rows, false)
    print(text)
    if "--write-docs" in argv:
        path = os.path.join(os.path.dirname(__file__), "..", "docs", "quantitative.md")
        with open(path) as f:
            doc = f.read()
        start, end = "<!-- table:start -->", "<!-- table:end -->"
        head, rest = doc.split(start)
        _, tail = rest.split(end)
        with open(path, "w") as f:
            f.write(f"{head}{start}\n{text}\n\n({len(seeds)} folders per SNR 10, 20, 40, seeds s, s + 1000, s + 2000: "
                    f"`python -m benchmarks.bench_quantitative --write-docs`)\n{end}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
