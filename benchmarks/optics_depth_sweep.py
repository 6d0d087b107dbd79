"""Deep particles through diffusive tissue: optical detections and registration against depth and brightness.

Reproduces the table "What the pipeline makes of it" in ``docs/quantitative.md``::

    python -m benchmarks.optics_depth_sweep [--seeds 1 2 3] [--out /tmp/depth-sweep]

Each case simulates a 2D folder (``SimulationConfig(scattering="diffusion", ...)``), runs
:func:`dualmode.pipeline.analyse_folder` and prints one JSON line: optical detections (all, and
within 50 µm of a true particle), the registration status or its error, and the true TRE (mm).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

#: (scattering, min depth, max depth, photons)
CASES = [("mild", 0.5, 0.5, 2e3)] + [("diffusion", d, d, p) for p in (2e3, 2e5, 2e6) for d in (0.5, 1.0, 2.0, 3.0)] \
    + [("diffusion", 0.0, d, p) for p in (2e4, 2e5, 2e6) for d in (1.0, 2.0, 3.0)]


def run_case(folder: str, scattering: str, dmin: float, dmax: float, photons: float, seed: int) -> dict:
    """Simulate, analyse and score one folder."""
    from dualmode.pipeline import analyse_folder
    from dualmode.registration import detect_optical_particles
    from dualmode.simulate import SimulationConfig, simulate_folder, true_tre

    truth = simulate_folder(folder, SimulationConfig(seed=seed, scattering=scattering, min_depth_mm=dmin,
                                                     depth_mm=dmax, photons=photons))
    res = analyse_folder(folder)
    pts = np.array([p["optical_xyz_um"] for p in truth["particles"] if p["in_optical_field"]])
    found = detect_optical_particles(res.optics.data, res.optics.spacing_um, diameter_um=200.0).xyz
    near = [float(np.min(np.linalg.norm(pts[:, :2] - x[:2], axis=1))) for x in found]
    out = {"scattering": scattering, "depth_mm": [dmin, dmax], "photons": photons, "seed": seed, "ok": res.ok,
           "optical_detections": len(found), "correct_within_50um": int(sum(d <= 50 for d in near)),
           "error": res.report["registration"].get("error"), "flags": res.report.get("flags")}
    if res.registration is not None:
        tre = true_tre(res.registration.optical_to_mri, np.array(truth["optical_to_mri"]), pts, planar=True)
        out["true_tre_mm"] = float(np.median(tre))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", default="depth-sweep", help="folder for the simulated acquisitions")
    args = ap.parse_args(argv)
    for scattering, dmin, dmax, photons in CASES:
        for seed in args.seeds:
            folder = os.path.join(args.out, f"{scattering}_{dmin:g}-{dmax:g}mm_{photons:.0e}_s{seed}")
            print(json.dumps(run_case(folder, scattering, dmin, dmax, photons, seed)), flush=True)


if __name__ == "__main__":
    main()
