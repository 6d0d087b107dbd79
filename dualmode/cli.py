"""Command line: ``dualmode demo | simulate | run | info | convert | view | plan``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time

from . import __version__


def _add_simulation_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`SimulationConfig` field (``--background-ratio`` etc.)."""
    from .simulate import SimulationConfig

    for f in dataclasses.fields(SimulationConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=f"(default: off)")
        elif isinstance(default, tuple):
            p.add_argument(flag, type=float, nargs=len(default), metavar="V", help=f"(default: {default})")
        else:
            typ = type(default) if default is not None else float
            p.add_argument(flag, type=typ, help=f"(default: {default})")


def _simulation_config(args):
    from .simulate import SimulationConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimulationConfig)
             if f.name != "extra" and getattr(args, f.name, None) is not None
             and getattr(args, f.name) is not False}  # 0 is a value (--particles-outside-optics 0)
    if "diameter_um" in given:
        given["diameter_um"] = tuple(given["diameter_um"])
    return SimulationConfig(**given)


def _add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="dualmode-out", help="output root (default: %(default)s)")
    p.add_argument("--optical-pixel-size", type=float, nargs="+", metavar="UM",
                   help="optical pixel size in um (x y [z]) for files that carry none")
    p.add_argument("--no-rf-correction", action="store_true", help="do not divide out RF depletion")
    p.add_argument("--no-refine", action="store_true", help="skip SimpleITK mutual-information refinement")
    p.add_argument("--no-mirror", action="store_true", help="do not test the mirrored hypothesis")
    p.add_argument("--fused-grid", default="mri",
                   help="grid of fused.nii.gz/.ome.tif: 'mri' (default), 'optical' (optical resolution over "
                        "the MRI field) or a spacing in mm")


def _options(args):
    from .pipeline import PipelineOptions

    return PipelineOptions(
        rf_correction=not args.no_rf_correction,
        refine=not args.no_refine,
        allow_mirror=not args.no_mirror,
        optical_pixel_size_um=tuple(args.optical_pixel_size) if args.optical_pixel_size else None,
        fused_grid=args.fused_grid if args.fused_grid in ("mri", "optical") else float(args.fused_grid),
    )


def _print_progress(quiet: bool):
    def show(entry: dict, done: int, total: int) -> None:
        if quiet:
            return
        state = "ok" if entry["status"] == "ok" else f"FAILED: {entry['error']}"
        print(f"[{done}/{total}] {entry['name']}: {state} ({entry['seconds']:.1f} s)", flush=True)

    return show


def cmd_simulate(args) -> int:
    from .simulate import simulate_folder

    cfg = _simulation_config(args)
    truth = simulate_folder(args.folder, cfg)
    print(f"wrote {args.folder} ({len(truth['particles'])} particles, ndim {cfg.ndim}, seed {cfg.seed})")
    return 0


def cmd_run(args) -> int:
    """Exit code: 0 every folder ok or skipped, 1 some folder failed (see summary.json),
    2 nothing could run (output root not writable, scheduler unreachable), 130 interrupted."""
    from .batch import expand_folders, run_batch

    if args.workers is not None and args.workers < 1:
        print(f"dualmode run: error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2

    def show(entry: dict, done: int, total: int) -> None:
        if args.json:
            print(json.dumps(entry), flush=True)
        elif not args.quiet:
            state = f"FAILED: {entry['error']}" if entry["status"] == "failed" else entry["status"]
            secs = "" if entry.get("seconds") is None else f" ({entry['seconds']:.1f} s)"
            print(f"[{done}/{total}] {entry['name']}: {state}{secs}", flush=True)

    try:
        summary = run_batch(expand_folders(args.folders), args.out, _options(args), progress=show,
                            workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                            log_level=logging.DEBUG if args.verbose > 1 else logging.INFO)
    except KeyboardInterrupt:
        print(f"interrupted; summary: {os.path.join(args.out, 'summary.json')}", file=sys.stderr)
        return 130
    except (OSError, TimeoutError) as err:  # output root not writable, scheduler unreachable
        print(f"dualmode run: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary), flush=True)
    elif not args.quiet:
        print(f"{summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed "
              f"in {summary['seconds']:.1f} s; summary: {os.path.join(args.out, 'summary.json')}")
    return 1 if summary["failed"] else 0


def cmd_demo(args) -> int:
    from .batch import run_batch
    from .simulate import SimulationConfig, simulate_folder

    t0 = time.perf_counter()
    acq = os.path.join(args.out, "acquisitions", "demo")
    print(f"simulating a 2D acquisition folder with ground truth in {acq} ...", flush=True)
    simulate_folder(acq, SimulationConfig(seed=args.seed, background_ratio=10.0, snr=20.0, rotation_deg=20.0))
    summary = run_batch([acq], args.out, _options(args), progress=_print_progress(False))
    out = os.path.join(args.out, "demo")
    if summary["failed"]:
        return 1
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    sf, rg = rep["signflip"], rep["registration"]
    print(f"13C SNR {sf['snr']:.1f}; background suppressed by {sf.get('background_suppression_db', float('nan')):.1f} dB, "
          f"residual {sf.get('residual_background_sigma', float('nan')):+.2f} sigma; "
          f"{rg['matched']} particles matched, LOO TRE {rg['tre_loo_mm'] * 1000:.0f} um")
    print(f"outputs in {out} ({time.perf_counter() - t0:.1f} s): " + ", ".join(sorted(os.listdir(out))))
    return 0


def cmd_info(args) -> int:
    from .io import InputError, load_acquisition

    status = 0
    for folder in args.folders:
        try:
            acq = load_acquisition(folder, args.optical_pixel_size)
        except InputError as err:
            print(f"{folder}: INVALID: {err}")
            status = 1
            continue
        desc = {
            "folder": folder,
            "name": acq.name,
            "raw": acq.kspace.source,
            "mri": acq.kspace.header.describe(),
            "polarization": acq.polarization.tolist(),
            "optics": None if acq.optics is None else {
                "image": acq.optics.source, "shape_xyz": list(acq.optics.data.shape),
                "pixel_size_um": list(acq.optics.spacing_um),
                "modulated_frames": 0 if acq.optics.frames is None else int(acq.optics.frames.shape[0]),
                "placement_center_mm": None if acq.placement_center_mm is None else acq.placement_center_mm.tolist(),
            },
        }
        desc.update(_info_sources(acq))
        print(json.dumps(desc, indent=2))
    return status


def _info_sources(acq) -> dict:
    """Where each MRI value came from, and the slice packages of a vendor scan (issue 14)."""
    from .importer import describe_packages, value_sources

    out = {"sources": value_sources(acq)}
    packages = describe_packages(acq.kspace.source)
    if packages and len(packages) > 1:
        out["packages"] = packages
    return out


def cmd_import(args) -> int:
    from .importer import import_acquisition
    from .io import InputError

    try:
        man = import_acquisition(args.scanner, args.optical, args.dest, polarization=args.polarization,
                                 scheme=args.scheme, copy=args.copy, package=args.package, raw_format=args.format,
                                 pixel_size_um=args.optical_pixel_size, hyperpolarized=not args.thermal)
    except InputError as err:
        print(f"dualmode import: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.dest}/acquisition.json: {len(man['mri']['polarization'])} shots "
          f"({man['mri']['scheme']}), raw {man['mri']['source']['path']}, optics {man['optics']['image']}; "
          f"geometry: {man['mri']['x-imported']['geometry_source']}")
    return 0


def cmd_convert(args) -> int:
    from .io import InputError, convert_to_ismrmrd

    try:
        ksp = convert_to_ismrmrd(args.src, args.dst, args.format)
    except InputError as err:
        print(f"dualmode convert: {err}", file=sys.stderr)
        return 1
    h = ksp.header
    print(f"wrote {args.dst}: matrix {list(h.matrix)}, FOV {list(h.fov_mm)} mm, {h.n_repetitions} repetitions, "
          f"{h.n_coils} coils, {h.nucleus} at {(h.frequency_hz or 0) / 1e6:.4f} MHz")
    return 0


def cmd_view(args) -> int:
    from .io import InputError
    from .view import screenshot, show

    try:
        if args.screenshot:
            print(screenshot(args.result, args.screenshot))
        else:
            show(args.result)
    except (ImportError, InputError, RuntimeError) as err:
        print(f"dualmode view: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_schema(args) -> int:
    from .io.schema import manifest_json_schema

    print(json.dumps(manifest_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualmode", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dualmode {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate a realistic acquisition folder and process it")
    p.add_argument("--out", default="dualmode-demo", help="output root (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo, optical_pixel_size=None, no_rf_correction=False, no_refine=False,
                   no_mirror=False, fused_grid="mri")

    p = sub.add_parser("simulate", help="write a simulated acquisition folder with ground truth")
    p.add_argument("folder", help="folder to create (its name is the acquisition name)")
    _add_simulation_flags(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("run", help="process acquisition folders into OUT/<folder name>/ (Dask)")
    p.add_argument("folders", nargs="+", help="acquisition folders (each holds acquisition.json); "
                                              "patterns with * ? [] are expanded")
    _add_pipeline_flags(p)
    p.add_argument("-j", "--workers", type=int, metavar="N",
                   help="local worker processes (default: all cores; 1: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--resume", action="store_true",
                   help="skip folders whose outputs are complete and whose inputs are unchanged")
    out_mode = p.add_mutually_exclusive_group()
    out_mode.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    out_mode.add_argument("--json", action="store_true",
                          help="one JSON line per finished folder, then the summary")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("info", help="validate and describe acquisition folders")
    p.add_argument("folders", nargs="+")
    p.add_argument("--optical-pixel-size", type=float, nargs="+", metavar="UM")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("import", help="make an acquisition folder from a scanner experiment and a microscope image")
    p.add_argument("scanner", help="Bruker experiment folder, Varian .fid folder, twix .dat or ISMRMRD file")
    p.add_argument("optical", help="fluorescence TIFF/OME-TIFF")
    p.add_argument("dest", help="new acquisition folder")
    sign = p.add_mutually_exclusive_group(required=True)
    sign.add_argument("--polarization", metavar="+-+-", help="sign of every repetition")
    sign.add_argument("--scheme", metavar="+-", help="sign pattern repeated over the repetitions")
    p.add_argument("--copy", action="store_true", help="copy raw data and image instead of referencing them")
    p.add_argument("--package", type=int, help="slice package of a multi-package scan (see dualmode info)")
    p.add_argument("--format", help="raw format (guessed when absent)")
    p.add_argument("--optical-pixel-size", type=float, nargs="+", metavar="UM")
    p.add_argument("--thermal", action="store_true", help="thermal-equilibrium data: no RF-depletion model")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("schema", help="print the JSON Schema of acquisition.json")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("convert", help="convert raw k-space (Bruker, Varian, Siemens twix, npz) to ISMRMRD .h5")
    p.add_argument("src", help="Bruker experiment folder, Varian .fid folder, Siemens .dat, .npz or .h5")
    p.add_argument("dst", help="ISMRMRD HDF5 file to write (.h5)")
    p.add_argument("--format", help="source format (bruker, varian, twix, npz, ismrmrd); default: guessed")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("view", help="open a result folder in napari (RAS mm; needs dualmode[view])")
    p.add_argument("result", help="result folder OUT/<name>/ written by dualmode run")
    p.add_argument("--screenshot", metavar="FILE.png", help="render headless to FILE.png and exit (servers)")
    p.set_defaults(func=cmd_view)

    from .plan import add_plan_parser

    add_plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
