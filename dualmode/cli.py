"""Command line: ``dualmode demo | simulate | run | info | import | schema | convert | view | plan``.

Usage errors (a bad flag value, a missing input folder, a malformed scheduler address)
end with the subcommand's usage and exit code 2 before anything runs. ``-v``, ``-q`` and
``--json`` work before or after the subcommand. Building the parser imports no science
package (``dualmode --help`` is fast); each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from . import __version__
from .cli_log import configure_logging
from . import cli_args
from .cli_plan import add_plan_arguments, cmd_plan
from .cli_types import EXAMPLES, simulation_config


def _options(args):
    from .pipeline import PipelineOptions

    return PipelineOptions(
        rf_correction=not args.no_rf_correction,
        refine=not args.no_refine,
        allow_mirror=not args.no_mirror,
        optical_pixel_size_um=tuple(args.optical_pixel_size) if args.optical_pixel_size else None,
        fused_grid=args.fused_grid,
        match_tolerance_mm=args.match_tolerance_mm,
        t2star_deconvolution=args.t2star_deconvolution,
    )


def _print_progress(quiet: bool):
    def show(entry: dict, done: int, total: int) -> None:
        if quiet and entry["status"] != "failed":
            return
        state = "ok" if entry["status"] == "ok" else f"FAILED: {entry['error']}"
        print(f"[{done}/{total}] {entry['name']}: {state} ({entry['seconds']:.1f} s)", flush=True,
              file=sys.stderr if entry["status"] == "failed" else sys.stdout)

    return show


def cmd_simulate(args) -> int:
    """Simulate into a temporary folder beside the destination, then rename: all or nothing."""
    import shutil
    import tempfile

    from .simulate import simulate_folder

    cfg = simulation_config(args)
    dest = os.path.abspath(args.folder)
    parent, name = os.path.split(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        truth = simulate_folder(os.path.join(work, name), cfg)
        if os.path.isdir(dest):  # empty, or --force
            os.rename(dest, os.path.join(work, "replaced"))
        os.rename(os.path.join(work, name), dest)
    except (OSError, ValueError) as err:
        print(f"dualmode simulate: error: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"folder": dest, "particles": len(truth["particles"]), "config": truth["config"]}))
    elif not args.quiet:
        print(f"wrote {args.folder} ({len(truth['particles'])} particles, ndim {cfg.ndim}, seed {cfg.seed})")
    return 0


def cmd_run(args) -> int:
    """Exit code: 0 every folder ok or skipped, 1 some folder failed (see summary.json),
    2 nothing could run (bad arguments, OUT locked or not writable or inside an input folder,
    scheduler unreachable), 130 interrupted (Ctrl-C, SIGTERM)."""
    from .batch import expand_folders, run_batch
    from .progress import BatchProgress

    if args.workers is not None and args.workers < 1:
        print(f"dualmode run: error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.timeout is not None and args.timeout < 0:
        print(f"dualmode run: error: --timeout must be >= 0 seconds, got {args.timeout}", file=sys.stderr)
        return 2
    quiet, json_lines = getattr(args, "quiet", False), getattr(args, "json", False)
    shown = BatchProgress(quiet=quiet, json_lines=json_lines)
    console = logging.getLogger("dualmode").getEffectiveLevel()
    try:
        summary = run_batch(expand_folders(args.folders), args.out, _options(args), progress=shown,
                            workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                            log_level=logging.DEBUG if getattr(args, "verbose", 0) > 1 else logging.INFO,
                            timeout=args.timeout, overwrite=args.overwrite,
                            dashboard=None if args.dashboard == "none" else args.dashboard,
                            console_level=console, on_start=shown.start)
    except KeyboardInterrupt:
        shown.close()
        print(f"interrupted; summary: {os.path.join(args.out, 'summary.json')}", file=sys.stderr)
        return 130
    except (OSError, TimeoutError, ValueError) as err:  # OUT locked/unwritable, scheduler unreachable
        shown.close()
        print(f"dualmode run: error: {err}", file=sys.stderr)
        return 2
    shown.close(summary)
    return 1 if summary["this_run"]["failed"] else 0


def cmd_demo(args) -> int:
    from .batch import run_batch
    from .pipeline import PipelineOptions
    from .simulate import SimulationConfig, simulate_folder

    t0 = time.perf_counter()
    acq = os.path.join(args.out, "acquisitions", "demo")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"simulating a 2D acquisition folder with ground truth in {acq} ...")
    simulate_folder(acq, SimulationConfig(seed=args.seed, background_ratio=10.0, snr=20.0, rotation_deg=20.0,
                                          optical_frames=8))  # modulated optics: the NV lock-in image is fused
    summary = run_batch([acq], args.out, PipelineOptions(), progress=_print_progress(args.quiet))
    out = os.path.join(args.out, "demo")
    if summary["failed"]:
        return 1
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    sf, rg = rep["signflip"], rep["registration"]
    if args.json:
        print(json.dumps({"out": out, "signflip": sf, "registration": rg}))
        return 0
    say(f"13C SNR {sf['snr']:.1f}; background suppressed by {sf.get('background_suppression_db', float('nan')):.1f} "
        f"dB, residual {sf.get('residual_background_sigma', float('nan')):+.2f} sigma; "
        f"{rg['matched']} particles matched, LOO TRE {rg['tre_loo_mm'] * 1000:.0f} um")
    say(f"outputs in {out} ({time.perf_counter() - t0:.1f} s): " + ", ".join(sorted(os.listdir(out))))
    return 0


def cmd_info(args) -> int:
    from .io import InputError, load_acquisition

    status = 0
    for folder in args.folders:
        try:
            acq = load_acquisition(folder, args.optical_pixel_size)
        except InputError as err:
            print(f"{folder}: INVALID: {err}", file=sys.stderr)
            status = 1
            continue
        desc = {
            "folder": folder,
            "name": acq.name,
            "raw": acq.kspace.source,
            "mri": acq.kspace.header.describe(),
            "polarization": acq.polarization.tolist(),
            "hyperpolarized": acq.hyperpolarized,
            "sampling": acq.sampling,
            "optics": None if acq.optics is None else {
                "image": acq.optics.source, "shape_xyz": list(acq.optics.data.shape),
                "pixel_size_um": list(acq.optics.spacing_um),
                "modulated_frames": 0 if acq.optics.frames is None else int(acq.optics.frames.shape[0]),
                "placement_center_mm": None if acq.placement_center_mm is None else acq.placement_center_mm.tolist(),
                "placement_orientation": None if acq.placement_orientation is None
                else acq.placement_orientation.tolist(),
                "placement_orientation_uncertainty_deg": acq.placement_orientation_uncertainty_deg,
            },
        }
        desc.update(_info_sources(acq))
        print(json.dumps(desc, indent=None if args.json else 2))
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

    print(json.dumps(manifest_json_schema(), indent=None if args.json else 2))
    return 0


def _common_flags(p: argparse.ArgumentParser, suffix: str = "") -> None:
    """``-v``/``-q``/``--json``, accepted before and after the subcommand (merged in :func:`main`)."""
    g = p.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="count", default=0, dest="verbose" + suffix,
                   help="log each stage of the dualmode pipeline (-vv: debug); other libraries stay quiet")
    g.add_argument("-q", "--quiet", action="store_true", dest="quiet" + suffix,
                   help="print only failures (always on stderr)")
    g.add_argument("--json", action="store_true", dest="json" + suffix,
                   help="machine-readable output: JSON lines on stdout")


def _subparser(sub, name: str, help: str, func, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                       formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    _common_flags(p, "_sub")
    p.set_defaults(func=func, parser=p)
    return p


#: command -> (one-line help, function, its arguments); the arguments of a command are only added when it is
#: the one being parsed, so that ``dualmode --help`` builds (and imports) as little as possible
COMMANDS = {
    "demo": ("simulate a realistic acquisition folder and process it", cmd_demo, cli_args.demo),
    "simulate": ("write a simulated acquisition folder with ground truth", cmd_simulate, cli_args.simulate),
    "run": ("process acquisition folders into OUT/<folder name>/ (Dask)", cmd_run, cli_args.run),
    "info": ("validate and describe acquisition folders", cmd_info, cli_args.info),
    "import": ("make an acquisition folder from a scanner experiment and a microscope image", cmd_import,
               cli_args.import_),
    "schema": ("print the JSON Schema of acquisition.json", cmd_schema, None),
    "convert": ("convert raw k-space (Bruker, Varian, Siemens twix, npz) to ISMRMRD .h5", cmd_convert,
                cli_args.convert),
    "view": ("open a result folder in napari (RAS mm; needs dualmode[view])", cmd_view, cli_args.view),
    "plan": ("choose the k-space samples of an optics-guided (accelerated) acquisition", cmd_plan,
             add_plan_arguments),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``dualmode`` parser (imports no science package).

    With ``argv``, only the arguments of the command named in it are added (all of them otherwise).
    """
    parser = argparse.ArgumentParser(prog="dualmode", description=__doc__.split("\n\n")[0],
                                     epilog="run 'dualmode COMMAND --help' for each command's options and examples",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dualmode {__version__}")
    _common_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (text, func, add_arguments) in COMMANDS.items():
        p = _subparser(sub, name, text, func)
        if add_arguments is not None and wanted in (None, name):
            add_arguments(p)
    return parser


def _merge_common(args) -> None:
    """One value of ``-v``/``-q``/``--json`` whether given before or after the subcommand."""
    args.verbose = args.verbose + getattr(args, "verbose_sub", 0)
    args.quiet = args.quiet or getattr(args, "quiet_sub", False)
    args.json = args.json or getattr(args, "json_sub", False)
    if args.quiet and args.json:
        args.parser.error("-q/--quiet and --json exclude each other")


def _check_inputs(args) -> None:
    """Usage errors found before anything runs: missing input folders, a simulate destination in use."""
    p = args.parser
    if args.command in ("run", "info"):
        from .batch import expand_folders

        args.folders = expand_folders(args.folders)
        missing = [f for f in args.folders if not os.path.isdir(f)]
        if missing:
            what = "not a folder" if os.path.exists(missing[0]) else "no such folder"
            p.error(f"{what}: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if args.command == "simulate" and os.path.lexists(args.folder):
        if not os.path.isdir(args.folder):
            p.error(f"{args.folder} exists and is not a folder")
        if os.listdir(args.folder) and not args.force:
            p.error(f"{args.folder} exists and is not empty; nothing was written (pass --force to replace it)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dualmode``; returns the exit code (2: usage error).

    Without ``argv`` (the ``dualmode`` command itself), ``dualmode run`` ends the process
    when done (:func:`_exit_without_teardown`) instead of returning, and pydantic is told
    to load no plugins (``PYDANTIC_DISABLE_PLUGINS``, unless set): looking for them reads
    the entry points of every installed distribution (~25 ms with 240 installed) before
    the first ``acquisition.json`` is validated.
    """
    argv_given = argv
    if argv is None:  # this process is the dualmode command: it uses no pydantic plugin (a user's setting wins)
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
        _merge_common(args)
        configure_logging(args.verbose, args.quiet)
        _check_inputs(args)
    except SystemExit as stop:  # --help, --version, usage errors (argparse already printed them)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        code = args.func(args)
    except BrokenPipeError:  # e.g. dualmode schema | head
        sys.stdout = open(os.devnull, "w")
        return 1
    if argv_given is None and getattr(args, "command", None) == "run":  # this process's own command line
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """End the process now with ``code``: the atexit handlers run (logging, multiprocessing, finalizers)
    and stdout/stderr are flushed, but the interpreter does not tear down every imported module one by
    one (about 0.4 s of CPU after a batch, measured; every file the batch wrote is already closed)."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
