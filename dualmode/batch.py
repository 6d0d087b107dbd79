"""Run the pipeline over many acquisition folders with fault isolation.

A failing folder never stops the others; ``OUT/summary.json`` lists every folder
with ``status`` ``"ok"`` or ``"failed"`` and the error message.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Iterable

from .outputs import write_json
from .pipeline import PipelineOptions, process_folder

log = logging.getLogger("dualmode")


def run_one(folder: str, out_root: str, options: PipelineOptions) -> dict:
    """Process one folder; never raises: returns its summary entry."""
    t0 = time.perf_counter()
    try:
        report = process_folder(folder, out_root, options)
        entry = {"folder": folder, "name": report["name"], "status": "ok", "error": None,
                 "snr": report["signflip"]["snr"], "matched": report["registration"]["matched"]}
    except Exception as err:  # fault isolation: record and go on
        from dualmode.io import InputError
        from dualmode.registration import RegistrationError

        known = isinstance(err, (InputError, RegistrationError))
        msg = str(err) if known else f"{type(err).__name__}: {err}"
        if not known:
            log.exception("unexpected failure in %s", folder)
        entry = {"folder": folder, "name": os.path.basename(os.path.normpath(folder)), "status": "failed",
                 "error": msg}
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    return entry


def run_batch(folders: Iterable[str], out_root: str, options: PipelineOptions | None = None,
              progress: Callable[[dict, int, int], None] | None = None) -> dict:
    """Process ``folders`` into ``out_root``; write and return ``summary.json`` content."""
    folders = [os.fspath(f) for f in folders]
    opts = options or PipelineOptions()
    os.makedirs(out_root, exist_ok=True)
    entries = []
    for i, folder in enumerate(folders):
        entry = run_one(folder, out_root, opts)
        entries.append(entry)
        if progress:
            progress(entry, i + 1, len(folders))
    summary = {"folders": entries, "ok": sum(e["status"] == "ok" for e in entries),
               "failed": sum(e["status"] != "ok" for e in entries)}
    write_json(os.path.join(out_root, "summary.json"), summary)
    return summary
