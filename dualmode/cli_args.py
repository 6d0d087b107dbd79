"""The arguments of each ``dualmode`` command, each with a type that refuses bad values (rc 2, no traceback)."""

from __future__ import annotations

import argparse

from .cli_types import (READER_NAMES, NumbersAction, add_simulation_flags, bounded, fused_grid, polarization_block,
                        positive_float, positive_int, scheduler_address, sign_list)


def demo(p: argparse.ArgumentParser) -> None:
    """``dualmode demo``."""
    p.add_argument("-o", "--out", default="dualmode-demo", help="output root (default: %(default)s)")
    p.add_argument("--seed", type=bounded(int, "seed", ge=0), default=7, help="random seed of the simulation (default: 7)")


def simulate(p: argparse.ArgumentParser) -> None:
    """``dualmode simulate``."""
    p.add_argument("folder", help="folder to create (its name is the acquisition name)")
    p.add_argument("--force", action="store_true", help="replace a destination that is not empty")
    add_simulation_flags(p)


def run(p: argparse.ArgumentParser) -> None:
    """``dualmode run``."""
    p.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="acquisition folders (each holds acquisition.json); patterns with * ? [] are expanded "
                        "unless a folder of that literal name exists")
    p.add_argument("-o", "--out", default="dualmode-out", help="output root (default: %(default)s)")
    pipeline_flags(p)
    g = p.add_argument_group("execution")
    g.add_argument("-j", "--workers", type=positive_int, metavar="N",
                   help="local worker processes, forked from this process after its imports "
                        "(default: all cores; 1: in this process)")
    g.add_argument("--scheduler", type=scheduler_address, metavar="ADDRESS",
                   help="run on an existing dask.distributed scheduler, e.g. tcp://host:8786; "
                        "'local': on a Dask LocalCluster of --workers processes (with its dashboard)")
    g.add_argument("--resume", action="store_true",
                   help="skip folders whose outputs are complete and whose inputs are unchanged")
    g.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="fail a folder not finished after SECONDS (default: %(default)g; 0: no limit)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace OUT/<name> even when it holds the result of another source folder")
    g.add_argument("--dashboard", default="127.0.0.1:0", metavar="ADDRESS",
                   help="Dask dashboard of the local cluster (default: loopback, random port; 0.0.0.0:8787 "
                        "opens it to the network; 'none': no dashboard)")


def info(p: argparse.ArgumentParser) -> None:
    """``dualmode info``."""
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="acquisition folders (each holds acquisition.json)")
    p.add_argument("--optical-pixel-size", action=NumbersAction, type=positive_float, metavar="UM",
                   help="optical pixel size in µm, x y [z], for image files that carry none")


def import_(p: argparse.ArgumentParser) -> None:
    """``dualmode import``."""
    p.add_argument("scanner", help="Bruker experiment folder, Varian .fid folder, twix .dat or ISMRMRD file")
    p.add_argument("optical", help="fluorescence TIFF/OME-TIFF")
    p.add_argument("dest", help="new acquisition folder")
    sign = p.add_mutually_exclusive_group(required=True)
    sign.add_argument("--polarization", type=sign_list, metavar="+-+-", help="sign of every repetition, in order")
    sign.add_argument("--scheme", type=polarization_block, metavar="+-",
                      help="sign pattern repeated over the repetitions (e.g. +-, +--+, abba)")
    p.add_argument("--copy", action="store_true", help="copy raw data and image instead of referencing them")
    p.add_argument("--package", type=bounded(int, "package", ge=0), metavar="K",
                   help="slice package of a multi-package scan (see dualmode info)")
    p.add_argument("--format", choices=READER_NAMES, help="raw format (default: guessed from the path)")
    p.add_argument("--optical-pixel-size", action=NumbersAction, type=positive_float, metavar="UM",
                   help="optical pixel size in µm, x y [z], for image files that carry none")
    p.add_argument("--thermal", action="store_true", help="thermal-equilibrium data: no RF-depletion model")


def convert(p: argparse.ArgumentParser) -> None:
    """``dualmode convert``."""
    p.add_argument("src", help="Bruker experiment folder, Varian .fid folder, Siemens .dat, .npz or .h5")
    p.add_argument("dst", help="ISMRMRD HDF5 file to write (.h5)")
    p.add_argument("--format", choices=READER_NAMES, help="source format (default: guessed from the path)")


def view(p: argparse.ArgumentParser) -> None:
    """``dualmode view``."""
    p.add_argument("result", help="result folder OUT/<name>/ written by dualmode run")
    p.add_argument("--screenshot", metavar="FILE.png", help="render headless to FILE.png and exit (servers)")


def pipeline_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline options")
    g.add_argument("--optical-pixel-size", action=NumbersAction, type=positive_float, metavar="UM",
                   help="optical pixel size in µm, x y [z], for image files that carry none")
    g.add_argument("--no-rf-correction", action="store_true", help="do not divide out the RF depletion (cos α "
                                                                   "per excitation) of the 13C signal")
    g.add_argument("--no-refine", action="store_true", help="skip the SimpleITK mutual-information refinement "
                                                            "of the particle registration")
    g.add_argument("--no-mirror", action="store_true", help="do not test the mirrored hypothesis (microscopes "
                                                            "that never flip the image)")
    g.add_argument("--fused-grid", type=fused_grid, default="mri", metavar="GRID",
                   help="grid of fused.nii.gz/.ome.tif: 'mri' (default), 'optical' (optical resolution over "
                        "the MRI field) or a voxel spacing in mm")
    g.add_argument("--t2star-deconvolution", action="store_true",
                   help="Wiener-deconvolve the T2* decay along a Cartesian readout when acquisition.json gives "
                        "mri.t2star_ms (ms) and mri.dwell_us (µs); the noise gain is reported")
    g.add_argument("--match-tolerance-mm", type=positive_float, metavar="MM",
                   help="particle match tolerance (default: 0.6 MRI voxel along each axis, at least 0.1 mm)")
