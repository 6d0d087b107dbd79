"""The output root ``OUT``: one run at a time, leftovers removed, ``summary.json`` kept across runs.

* ``OUT/.dualmode-lock`` is locked (``flock``) for the whole run; a second run into the
  same OUT fails at once (:class:`OutputLocked`). The lock dies with the process.
* Leftovers of killed runs (staging folders, temporaries) are removed at the start.
* ``summary.json`` keeps the folders of earlier runs that this run does not process.
* ``OUT/<name>`` made from another source folder is refused unless ``overwrite``;
  OUT inside an input folder is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time

from dualmode import __version__
from dualmode.atomic import remove_stale

from .resume import folder_name, read_report

log = logging.getLogger("dualmode")
LOCK = ".dualmode-lock"
SUMMARY = "summary.json"
COUNTS = ("ok", "skipped", "failed", "pending")


class OutputLocked(OSError):
    """Another ``dualmode run`` is writing into this OUT."""


class OutputLock:
    """Exclusive, non-blocking ``flock`` on ``OUT/.dualmode-lock`` (released when the process ends)."""

    def __init__(self, out_root: str):
        self.path = os.path.join(out_root, LOCK)
        self.fd = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputLocked(f"{os.path.dirname(self.path)}: another dualmode run is writing here "
                               f"({holder}); wait for it or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock; the file stays (removing it would race)


def check_out_root(out_root: str, folders: list[str]) -> None:
    """Refuse an OUT inside (or equal to) an input folder: outputs would land in the acquisition."""
    real_out = os.path.realpath(out_root)
    for folder in folders:
        real = os.path.realpath(folder)
        if real_out == real or real_out.startswith(real.rstrip(os.sep) + os.sep):
            raise ValueError(f"output folder {out_root} is inside the input folder {folder}; "
                             f"choose an output folder outside every acquisition")


def clean_out_root(out_root: str) -> list[str]:
    """Remove leftovers of killed runs in OUT and in each ``OUT/<name>/``; return what was removed."""
    removed = remove_stale(out_root)
    for name in sorted(os.listdir(out_root)):
        path = os.path.join(out_root, name)
        if not name.startswith(".") and os.path.isdir(path) and not os.path.islink(path):
            try:
                removed += remove_stale(path)
            except OSError as err:
                log.warning("could not clean %s: %s", path, err)
    return removed


def source_conflict(out_root: str, folder: str, overwrite: bool) -> str | None:
    """Error text when ``OUT/<name>`` holds the result of a different source folder (unless ``overwrite``)."""
    out_dir = os.path.join(out_root, folder_name(folder))
    if overwrite or not os.path.isdir(out_dir):
        return None
    report = read_report(out_dir)
    source = (report or {}).get("folder")
    if not source or os.path.realpath(source) == os.path.realpath(folder):
        return None
    return (f"{out_dir}: holds the result of another folder ({source}); not replacing it with {folder} "
            f"(use --overwrite, or another output folder)")


class Summary:
    """``OUT/summary.json``: this run's folders in input order after the earlier runs' other folders."""

    def __init__(self, out_root: str, folders: list[str], execution: dict):
        self.path = os.path.join(out_root, SUMMARY)
        self.out_root, self.execution = out_root, execution
        self.started = time.time()
        self.stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        self.order = {f: i for i, f in reversed(list(enumerate(folders)))}
        self.names = {folder_name(f) for f in folders}
        self.todo: list[str] = []
        self.entries: list[dict] = []
        self.earlier = self._earlier()

    def _earlier(self) -> list[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return []
        kept = []
        for e in old.get("folders", []) if isinstance(old, dict) else []:
            if not isinstance(e, dict) or e.get("name") in self.names:
                continue
            if e.get("status") == "pending":  # its run was killed (it held the lock until then)
                e = {**e, "status": "failed", "error": f"{e.get('folder')}: not finished (that run was killed)"}
            kept.append({**e, "run": e.get("run") or old.get("started")})
        return kept

    def add(self, entry: dict) -> None:
        self.entries.append({**entry, "run": self.stamp})

    def content(self, state: str) -> dict:
        done = {e["folder"] for e in self.entries}
        rows = self.entries + [{"folder": f, "name": folder_name(f), "status": "pending", "run": self.stamp}
                               for f in self.todo if f not in done]
        rows.sort(key=lambda e: self.order.get(e["folder"], len(self.order)))
        rows = self.earlier + rows
        out = {"state": state, "folders": rows, **{k: sum(e["status"] == k for e in rows) for k in COUNTS},
               "execution": self.execution, "out_root": self.out_root, "started": self.stamp,
               "seconds": round(time.time() - self.started, 3), "dualmode": __version__}
        if state != "running":
            del out["pending"]
        return out

    def this_run(self) -> dict:
        """Counts of this run's folders only (the exit code depends on them)."""
        return {k: sum(e["status"] == k for e in self.entries) for k in COUNTS}

    def write(self, state: str) -> dict:
        """Write ``summary.json`` atomically (a write error is logged: a full disk must not end the batch)."""
        from dualmode.outputs import write_json

        content = self.content(state)
        try:
            write_json(self.path, content)
        except OSError as err:
            log.error("could not write %s: %s", self.path, err)
        return content
