"""Registration in any orientation: the full sweep of issue 13 (the table in docs/registration.md).

Synthetic pairs with a known ``optical_to_mri`` (:func:`dualmode.simulate.make_pair`): a 48^3
MRI (0.25 mm) with 150 particles in a 1 mm slab and a 300x300x20 optical stack (15 x 40 um),
or a 400x400 widefield image (12 um) over a 0.6 mm slab, placed

* in each of the 24 axis-aligned orientations, proper and mirrored (``det = -1``);
* in 20 uniformly random rotations (scipy ``Rotation.random``);
* widefield with the optical axis along +-x, +-y, +-z of the MRI, and tilted 5-10 deg off the
  MRI z axis (the tilt is refined and the error of the fitted optical axis reported);
* a 2D MRI with the optical pixel size declared 3 % small (the similarity fit's ``scale``);
* a 2D MRI with 8 clusters of 2-3 touching particles among ~20 in the field, against the
  same phantoms with singles only;
* an oblique MRI grid (rotated 25 deg / 15 deg) with 0.2 x 0.2 x 0.4 mm voxels and a stack in
  a random orientation.

No coarse orientation and no centre are given (the whole MRI field and all of O(3) are
searched) except for the 2D cases (centre within 3 mm). Registration without the MI
refinement (the particle fit is what is tested). TRE: median over the true optical
particles of the distance between the estimated and true mappings, in units of the
smallest MRI voxel (in-plane for widefield). A case succeeds when it registers with a
median TRE <= 0.5 voxel (a wrong orientation gives several voxels).

Run: ``python -m benchmarks.registration_sweep [--quick]`` (prints the markdown table).
"""

from __future__ import annotations

import sys
import time

import numpy as np

SUITE = "registration-sweep"

STACK = dict(mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(300, 300, 20),
             optical_spacing_um=(15.0, 15.0, 40.0), n_particles=150, slab_mm=1.0, shift_mm=(1.0, -0.5, 0.3),
             brightness=800.0)
WIDEFIELD = dict(mri_matrix=(48, 48, 48), mri_fov_mm=(12.0, 12.0, 12.0), optical_shape=(400, 400, 1),
                 optical_spacing_um=(12.0, 12.0, 50.0), n_particles=150, slab_mm=0.6, shift_mm=(1.0, 1.0, 0.5))
FLAT = dict(n_particles=170, min_separation_mm=0.7, shift_mm=(0.0, 0.0, 0.0), outlier_fraction=0.0, angle_deg=30.0)
#: optical x, y, z axes (columns) with the optical axis along each MRI axis
AXES = {"+x": [[0, 0, 1], [1, 0, 0], [0, 1, 0]], "-x": [[0, 0, -1], [0, 1, 0], [1, 0, 0]],
        "+y": [[0, 1, 0], [0, 0, 1], [1, 0, 0]], "-y": [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
        "+z": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "-z": [[0, 1, 0], [1, 0, 0], [0, 0, -1]]}


def _oblique_affine():
    from dualmode.simulate.phantom import oblique_affine

    return oblique_affine()


def _tilted(angle_deg, tilt_deg):
    from dualmode.simulate.phantom import rotation_z

    return rotation_z(angle_deg, tilt_deg=tilt_deg)


def cases(quick: bool = False):
    """``(group, label, make_pair kwargs, register kwargs, planar)`` of every case."""
    from scipy.spatial.transform import Rotation

    cube = Rotation.create_group("O").as_matrix()
    mirror = np.diag([1.0, 1.0, -1.0])
    step = 6 if quick else 1
    out = []
    for i in range(0, 24, step):
        out.append(("stack, 24 axis-aligned", f"#{i}", dict(STACK, rotation=cube[i]), {}, False))
        out.append(("stack, 24 axis-aligned mirrored", f"#{i}", dict(STACK, rotation=cube[i] @ mirror), {}, False))
    for i in range(0, 20, 5 if quick else 1):
        rot = Rotation.random(random_state=1000 + i).as_matrix()
        out.append(("stack, 20 random rotations", f"#{i}", dict(STACK, rotation=rot), {}, False))
    for name, axes in AXES.items():
        out.append(("widefield, optical axis along each MRI axis", name,
                    dict(WIDEFIELD, rotation=np.array(axes, float)), {}, True))
    rng = np.random.default_rng(7)
    for i in range(2 if quick else 5):
        tilt, angle = rng.uniform(5.0, 10.0), rng.uniform(-180.0, 180.0)
        out.append(("widefield, tilted 5-10 deg", f"#{i} ({tilt:.1f} deg)",
                    dict(WIDEFIELD, rotation=_tilted(angle, tilt)), {}, True))
    for i in range(2 if quick else 5):
        out.append(("2D, pixel size declared 3 % small", f"#{i}", dict(FLAT), {"pixel_error": 1.03}, True))
    for i in range(2 if quick else 6):
        out.append(("2D, singles only", f"#{i}", dict(FLAT), {}, True))
        out.append(("2D, 8 clusters of 2-3 particles", f"#{i}", dict(FLAT, n_clusters=8), {}, True))
    for i in range(2 if quick else 5):
        rot = Rotation.random(random_state=2000 + i).as_matrix()
        out.append(("oblique MRI, 0.2x0.2x0.4 mm voxels", f"#{i}",
                    dict(STACK, rotation=rot, mri_matrix=(48, 48, 24), mri_affine_override=_oblique_affine()),
                    {}, False))
    return out


def run_case(seed, pair_kw, reg_kw, planar):
    """Register one pair; ``(success, tre_vox, scale, seconds, note, axis_error_deg)`` (the last:
    widefield against a 3D MRI, the angle between the fitted and the true optical axis)."""
    from dualmode.conventions import voxel_sizes
    from dualmode.registration import RegistrationError, register
    from dualmode.simulate import make_pair, true_tre

    pair = make_pair(seed, **pair_kw)
    optical = pair.optical
    factor = reg_kw.get("pixel_error", 1.0)
    optical.spacing_um = tuple(s / factor for s in pair.spacing_um)
    centre = dict(center_mm=pair.center_mm, uncertainty_mm=3.0) if pair.mri_image.shape[2] == 1 else {}
    t0 = time.perf_counter()
    try:
        reg = register(pair.mri_image, pair.mri_affine, pair.noise_sigma, optical, refine=False, **centre)
    except RegistrationError as err:
        return False, None, None, time.perf_counter() - t0, str(err)[:100], None
    elapsed = time.perf_counter() - t0
    o = pair.optical_xyz_um / factor
    tre = true_tre(reg.optical_to_mri, pair.optical_to_mri @ np.diag([factor, factor, factor, 1.0]), o,
                   planar=planar)
    if planar and pair.mri_image.shape[2] > 1:  # widefield: in-plane = normal to the optical axis
        from dualmode.conventions import apply_affine

        oo = o.copy()
        oo[:, 2] = 0.0
        err = apply_affine(reg.optical_to_mri, oo) - apply_affine(
            pair.optical_to_mri @ np.diag([factor, factor, factor, 1.0]), oo)
        axis = pair.optical_to_mri[:3, 2] / np.linalg.norm(pair.optical_to_mri[:3, 2])
        tre = np.linalg.norm(err - np.outer(err @ axis, axis), axis=1)
        fitted = np.asarray(reg.details["widefield"]["optical_axis_ras"])
        axis_err = float(np.degrees(np.arccos(min(1.0, abs(fitted @ axis)))))
    else:
        axis_err = None
    tre_vox = float(np.median(tre)) / float(voxel_sizes(pair.mri_affine).min())
    return tre_vox <= 0.5, tre_vox, reg.scale, elapsed, reg.details.get("chosen", ""), axis_err


def run(quick: bool = False) -> list[dict]:
    """One row per group: success rate, median / max TRE (voxels), median scale, median time."""
    from . import row

    results: dict[str, list] = {}
    for n, (group, label, pair_kw, reg_kw, planar) in enumerate(cases(quick)):
        results.setdefault(group, []).append(run_case(300 + n, pair_kw, reg_kw, planar))
        print(f"{group} {label}: {results[group][-1]}", file=sys.stderr, flush=True)
    rows = []
    for group, res in results.items():
        tre = [r[1] for r in res if r[1] is not None]
        rows.append(row(SUITE, group, "dualmode", float(np.median([r[3] for r in res])),
                        n=len(res), success=float(np.mean([r[0] for r in res])),
                        tre_vox_median=float(np.median(tre)) if tre else None,
                        tre_vox_max=float(np.max(tre)) if tre else None,
                        scale_median=float(np.median([r[2] for r in res if r[2] is not None])) if tre else None,
                        axis_err_deg_max=max((r[5] for r in res if r[5] is not None), default=None),
                        note="; ".join(sorted({r[4] for r in res if not r[0]}))[:200]))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of :func:`run` rows."""
    lines = ["| case | n | success | median TRE (voxel) | max TRE (voxel) | scale (median) | time (s, median) "
             "| optical axis error (deg, max) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, k=3: "-" if v is None else f"{v:.{k}f}")
        lines.append(f"| {r['case']} | {r['n']} | {100 * r['success']:.0f} % | {f(r['tre_vox_median'])} | "
                     f"{f(r['tre_vox_max'])} | {f(r['scale_median'], 4)} | {f(r['time_s'], 1)} | "
                     f"{f(r.get('axis_err_deg_max'), 1)} |")
    return "\n".join(lines)


def search_cost(n: int = 30, rounds: int = 5) -> dict:
    """Median time of the correspondence-free 3D search alone for ``n`` particles per side
    (20 % on each side without a partner, any rotation, both handednesses)."""
    from scipy.spatial.transform import Rotation

    from dualmode.registration.hypotheses import SearchSpace
    from dualmode.registration.triplets import match_particles_3d

    rng = np.random.default_rng(0)
    times, ok = [], []
    for k in range(rounds):
        o = rng.uniform(0, 4000, (n, 3)) * [1, 1, 0.25]
        rot = Rotation.random(random_state=k).as_matrix()
        m = o @ rot.T * 1e-3 + rng.normal(0, 0.02, (n, 3))
        keep = n - n // 5
        m = np.r_[m[:keep], rng.uniform(m.min(0), m.max(0), (n - keep, 3))]
        t0 = time.perf_counter()
        res = match_particles_3d(o, m, SearchSpace(tol=0.12))
        times.append(time.perf_counter() - t0)
        best = max((c for c in res.values() if c), key=lambda c: len(c.pairs))
        ok.append(np.abs(best.transform[:3, :3] - 1e-3 * rot).max() < 1e-4)
    return {"n": n, "time_s": float(np.median(times)), "correct": float(np.mean(ok))}


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
    print(f"\nsearch cost, 30 particles per side (median of 5): {search_cost()}")
