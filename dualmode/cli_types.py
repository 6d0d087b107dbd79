"""Argument types of the command line: each refuses a bad value as a usage error (rc 2, no traceback).

Nothing here imports numpy or the science packages: ``dualmode --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

#: reader names of :data:`dualmode.io.READERS` (a test keeps them equal; listed here to keep the parser light)
READER_NAMES = ("bruker", "ismrmrd", "npz", "twix", "varian")
SCHEDULER_PROTOCOLS = ("tcp", "tls", "inproc", "ucx", "ws", "wss")

#: the example epilog of each command's ``--help``
EXAMPLES = {
    "demo": "example:\n  dualmode demo -o demo-out    # simulate one folder, process it, print what came out",
    "simulate": "examples:\n  dualmode simulate acq/mouse-01 --seed 3 --rotation-deg 25 --mirror\n"
                "  dualmode simulate acq/vol --ndim 3 --matrix 48 --trajectory radial --undersample 2\n"
                "A destination that exists and is not empty is refused unless --force.",
    "run": "examples:\n  dualmode run study/*/ -o results -j 4\n"
           "  dualmode run scan01 scan02 -o results --resume -v\n"
           "  dualmode run study/* -o results --scheduler tcp://10.0.0.5:8786 --json > progress.jsonl\n"
           "exit code: 0 every folder ok or skipped, 1 some folder failed (see OUT/summary.json), "
           "2 usage error or nothing could run, 130 interrupted",
    "info": "example:\n  dualmode info scan01 scan02     # validate without processing; exit code 1 if any is invalid",
    "schema": "example:\n  dualmode schema > acquisition.schema.json   # for your editor or jsonschema",
    "convert": "examples:\n  dualmode convert /data/bruker/20240101/5 scan5.h5\n"
               "  dualmode convert meas_MID42.dat scan42.h5 --format twix",
    "view": "examples:\n  dualmode view results/mouse-01     # napari, RAS mm, 13C + fluorescence + particles\n"
            "  dualmode view results/mouse-01 --screenshot mouse-01.png",
    "import": "examples:\n  dualmode import /data/bruker/20240101/5 sample.ome.tif acq/mouse-01 --scheme +-\n"
              "  dualmode import meas.dat stack.tif acq/m2 --polarization +--+ --copy --optical-pixel-size 5 5 20",
    "plan": "examples:\n  dualmode plan acq/mouse-01 --acceleration 10 -o acq/mouse-01/plan\n"
            "  dualmode plan optics.ome.tif --matrix 64 64 1 --fov-mm 12.8 12.8 1 --center-mm 0 0 0",
}


def bounded(kind: type, name: str = "value", *, gt=None, ge=None, lt=None, le=None):
    """An argparse type: ``kind`` (int or float) within the bounds; the error names the bound."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{'an integer' if kind is int else 'a number'} expected, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"a finite number expected, got {text!r}")
        for bound, sign, ok in ((gt, ">", value > (gt or 0)), (ge, ">=", value >= (ge or 0)),
                                (lt, "<", value < (lt or 0)), (le, "<=", value <= (le or 0))):
            if bound is not None and not ok:
                raise argparse.ArgumentTypeError(f"{name} must be {sign} {bound}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


positive_int = bounded(int, "count", ge=1)
positive_float = bounded(float, gt=0)


def fused_grid(text: str):
    """``mri``, ``optical`` or a voxel spacing in mm (> 0)."""
    if text in ("mri", "optical"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'mri', 'optical' or a spacing in mm expected, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"the spacing must be a positive number of mm, got {text}")
    return value


def scheduler_address(text: str) -> str:
    """A Dask scheduler address ``[protocol://]host:port``, or ``local`` (a Dask LocalCluster), checked
    before anything runs."""
    if text == "local":
        return text
    proto, sep, rest = text.rpartition("://")
    if sep and proto not in SCHEDULER_PROTOCOLS:
        raise argparse.ArgumentTypeError(f"unknown protocol {proto!r} in {text!r}; expected one of "
                                         f"{', '.join(SCHEDULER_PROTOCOLS)}, e.g. tcp://host:8786")
    if proto == "inproc":
        return text
    host, colon, port = rest.rpartition(":")
    host = host.strip("[]")  # IPv6 literal
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or re.search(r"[\s/]", host):
        raise argparse.ArgumentTypeError(f"expected [protocol://]host:port (e.g. tcp://10.0.0.5:8786), got {text!r}")
    return text


def polarization_block(text: str) -> str:
    """A block of ``+``/``-`` holding both signs, or a named block (alternating, abba, thue-morse)."""
    from dualmode.recon.schemes import NAMED_BLOCKS

    block = NAMED_BLOCKS.get(text.strip().lower(), text).replace(" ", "")
    if not block or set(block) - {"+", "-"} or "+" not in block or "-" not in block:
        raise argparse.ArgumentTypeError(f"a block of '+' and '-' with both signs (e.g. +-, +--+) or one of "
                                         f"{', '.join(sorted(NAMED_BLOCKS))} expected, got {text!r}")
    return text


def sign_list(text: str) -> str:
    """The sign of every repetition as ``+``/``-`` characters, both signs present (``+-+-``)."""
    signs = text.replace(" ", "").replace(",", "")
    if not signs or set(signs) - {"+", "-"} or "+" not in signs or "-" not in signs:
        raise argparse.ArgumentTypeError(f"one '+' or '-' per repetition with both signs (e.g. +-+-) expected, "
                                         f"got {text!r}")
    return text


class NumbersAction(argparse.Action):
    """``nargs="+"`` of numbers with an allowed count (``counts``), e.g. 2 or 3 pixel sizes."""

    def __init__(self, option_strings, dest, counts=(2, 3), **kw):
        self.counts = counts
        super().__init__(option_strings, dest, nargs="+", **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) not in self.counts:
            parser.error(f"argument {option_string}: expected {' or '.join(map(str, self.counts))} values, "
                         f"got {len(values)}")
        setattr(namespace, self.dest, tuple(values))


# --- simulate: one flag per SimulationConfig field, help, unit and bounds from the field's metadata ---------

def add_simulation_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~dualmode.simulate.SimulationConfig` field (``--background-ratio`` etc.)."""
    from .simulate.config import SimulationConfig

    group = p.add_argument_group("simulation knobs (dualmode.simulate.SimulationConfig)")
    for f in dataclasses.fields(SimulationConfig):
        if f.name == "extra":
            continue
        meta, default, flag = f.metadata, f.default, "--" + f.name.replace("_", "-")
        unit = f" [{meta['unit']}]" if meta.get("unit") else ""
        text = f"{meta.get('help', '')}{unit}"
        if isinstance(default, bool):
            group.add_argument(flag, action="store_true", help=f"{text} (default: off)")
            continue
        kw = {"help": f"{text} (default: {_show(default, meta)})", "metavar": _metavar(f.name, meta, type(default) is int)}
        if meta.get("choices"):
            kw.update(choices=meta["choices"], metavar=None, type=type(default))
        elif f.name == "scheme":
            kw["type"] = polarization_block
        elif isinstance(default, str):  # free-form text (e.g. optical_rotation: 'a,b,c' or 'random')
            kw.update(type=str, metavar="TEXT")
        else:
            kind = int if type(default) is int else float
            kw["type"] = bounded(kind, f.name, **{k: meta.get(k) for k in ("gt", "ge", "lt", "le")})
        if isinstance(default, tuple):
            kw["nargs"] = len(default)
        group.add_argument(flag, **kw)


def _show(default, meta) -> str:
    if default is None:
        return meta.get("none") or "automatic"
    if isinstance(default, tuple):
        return " ".join(f"{v:g}" for v in default)
    return f"{default:g}" if isinstance(default, float) else str(default)


def _metavar(name: str, meta, integer: bool) -> str:
    if name == "scheme":
        return "BLOCK"
    unit = meta.get("unit") or ""
    return {"mm": "MM", "µm": "UM", "degrees": "DEG", "ms": "MS"}.get(unit, "N" if integer else "X")


def simulation_config(args):
    """The :class:`SimulationConfig` of the parsed flags (unset flags keep the defaults)."""
    from .simulate.config import SimulationConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimulationConfig)
             if f.name != "extra" and getattr(args, f.name, None) is not None
             and getattr(args, f.name) is not False}  # 0 is a value (--particles-outside-optics 0)
    if "diameter_um" in given:
        given["diameter_um"] = tuple(given["diameter_um"])
    return SimulationConfig(**given)
