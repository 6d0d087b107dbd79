"""Honest resume: a folder is skipped only when its result is complete and still current.

Complete: ``report.json`` lists every output with its sha256 and every listed file is there
with that checksum. Current: the input checksums (the manifest and every file it
references, wherever it lives: :func:`dualmode.provenance.input_checksums`), the options
and the dualmode version are those of the result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from dualmode import __version__
from dualmode.serialize import jsonable

log = logging.getLogger("dualmode")


def folder_name(folder: str) -> str:
    """Output name of an acquisition folder (``OUT/<name>/``): its base name."""
    return os.path.basename(os.path.normpath(os.fspath(folder)))


def read_report(out_dir: str) -> dict | None:
    """``out_dir/report.json`` or None when absent or unreadable."""
    try:
        with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def incomplete_outputs(out_dir: str, report: dict) -> str:
    """Why the result in ``out_dir`` is not complete ("" when every listed output checks out)."""
    from dualmode.provenance import sha256_file

    listed = report.get("outputs")
    if not isinstance(listed, dict) or not listed:
        return "report.json lists no outputs (an older or partial result)"
    for rel, digest in sorted(listed.items()):
        path = os.path.join(out_dir, *rel.split("/"))
        try:
            if sha256_file(path) != digest:
                return f"output {rel} changed since it was written"
        except OSError:
            return f"output {rel} missing"
    return ""


def completed_report(folder: str, out_dir: str, options) -> tuple[dict | None, str]:
    """The previous report if ``out_dir`` holds a complete, current, successful result of ``folder``.

    Returns ``(report, "")`` or ``(None, reason)``. Any error while checking (an input
    that cannot be read) is a reason to process the folder, which then reports it.
    """
    from dualmode.provenance import input_checksums

    report = read_report(out_dir)
    if report is None:
        return None, "no readable report.json"
    why = incomplete_outputs(out_dir, report)
    if why:
        return None, why
    if (report.get("registration") or {}).get("error"):
        return None, "not registered last time"
    try:
        old, new = report.get("input_sha256") or {}, input_checksums(folder)
    except Exception as err:  # fails the folder when it is processed
        return None, f"inputs cannot be checked ({err})"
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return None, "inputs changed: " + ", ".join(changed)
    if report.get("options") != json.loads(json.dumps(jsonable(dataclasses.asdict(options)))):
        return None, "options changed"
    if (report.get("versions") or {}).get("dualmode") != __version__:
        return None, "made by another dualmode version"
    return report, ""


def resume_entry(folder: str, out_root: str, options=None, *, log_level: int = logging.INFO) -> dict | None:
    """The ``"skipped"`` summary entry of a folder already done (see :func:`completed_report`), else None.

    Either way the decision is appended to ``out_root/<name>/log.txt``.
    """
    from dualmode.pipeline import PipelineOptions

    from .folder import new_entry
    from .logs import folder_log

    t0 = time.perf_counter()
    opts = options or PipelineOptions()
    folder = os.fspath(folder)
    entry = new_entry(folder)
    out_dir = os.path.join(os.fspath(out_root), entry["name"])
    if not os.path.isdir(out_dir):
        return None
    with folder_log(os.path.join(out_dir, "log.txt"), log_level):
        report, why = completed_report(folder, out_dir, opts)
        if report is None:
            log.info("%s: resume: to be processed (%s)", entry["name"], why)
            return None
        log.info("%s: resume: outputs complete, inputs and options unchanged: skipped", entry["name"])
    entry.update(status="skipped", snr=(report.get("signflip") or {}).get("snr"),
                 matched=(report.get("registration") or {}).get("matched"),
                 seconds=round(time.perf_counter() - t0, 3))
    return jsonable(entry)
