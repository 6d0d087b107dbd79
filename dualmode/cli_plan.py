"""Arguments of ``dualmode plan`` (:mod:`dualmode.plan`), kept apart so that building the parser stays light."""

from __future__ import annotations

import argparse

from .cli_types import bounded, positive_float, positive_int


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dualmode plan``, each with its type (a bad value is a usage error)."""
    p.add_argument("source", help="acquisition folder (optics + MRI geometry in acquisition.json) or an optical image")
    p.add_argument("-o", "--out", help="output folder (default: SOURCE/plan for a folder, else ./plan)")
    p.add_argument("--registration", help="registration.json or transform.tfm of an earlier full acquisition "
                                          "(default: the stage placement, with its uncertainty added to the support)")
    p.add_argument("--center-mm", type=float, nargs=3, metavar="MM",
                   help="placement of the optical field centre (RAS mm)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--acceleration", type=bounded(float, "acceleration", ge=1), metavar="R",
                        help="samples = full grid / R (default 10)")
    budget.add_argument("--samples", type=positive_int, metavar="N",
                        help="total number of samples (check samples included)")
    p.add_argument("--max-noise-amplification", type=bounded(float, "noise amplification", ge=1), metavar="X",
                   help="target accuracy: fewest samples whose noise amplification is at most this")
    p.add_argument("--dilation", type=bounded(float, "dilation", ge=0), default=1.0, metavar="VOXELS",
                   help="support margin around particles, voxels (default: %(default)s)")
    p.add_argument("--diameter-um", type=positive_float, metavar="UM",
                   help="particle diameter in µm (default: the manifest's, else 200)")
    p.add_argument("--matrix", type=positive_int, nargs=3, metavar="N",
                   help="MRI matrix (required for an optical image)")
    p.add_argument("--fov-mm", type=positive_float, nargs=3, metavar="MM",
                   help="MRI field of view in mm (required for an optical image)")
    p.add_argument("--tr-ms", type=positive_float, default=10.0, metavar="MS",
                   help="repetition time in ms (default: %(default)s)")


def cmd_plan(args) -> int:
    """``dualmode plan`` (imports :mod:`dualmode.plan` only when run)."""
    from .plan import cmd_plan as run

    return run(args)
