"""One folder of a batch: :func:`run_one` never raises, it returns the folder's summary entry.

Inside a folder task nothing is submitted to a Dask cluster (``dask`` runs synchronously),
so a worker processes exactly one folder at a time and ``peak_rss_mb`` is that folder's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping

from dualmode import __version__
from dualmode.serialize import jsonable

from .logs import folder_log
from .resume import folder_name, resume_entry
from .threads import effective_threads, pinned_threads, share_here
from .warm import warm_imports

log = logging.getLogger("dualmode")

#: Default per-folder time limit in seconds (``dualmode run --timeout``).
DEFAULT_TIMEOUT = 3600.0


class FolderTimeout(Exception):
    """A folder did not finish within its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None, folder: str):
    """Raise :class:`FolderTimeout` in this (main) thread after ``seconds``.

    Uses ``SIGALRM``, which also interrupts a blocking system call; elsewhere than the main
    thread it does nothing (workers are stopped by the batch instead).
    """
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise FolderTimeout(f"{folder}: not finished within the time limit of {seconds:g} s (--timeout)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _synchronous_dask():
    """Dask's synchronous scheduler for the folder's own graphs, if Dask is loaded (a Dask worker).

    No folder step builds a Dask graph in ``-j 1`` runs, so Dask is not imported for it.
    """
    import sys

    dask = sys.modules.get("dask")
    return dask.config.set(scheduler="synchronous") if dask is not None else contextlib.nullcontext()


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux >= 4.0: ``VmHWM``), so ``peak_rss_mb`` is per folder."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # other systems: the peak is since the worker started


def new_entry(folder: str) -> dict:
    """A folder's summary entry before it ran (``failed`` until it succeeds)."""
    return {"folder": folder, "name": folder_name(folder), "status": "failed", "error": None,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def failed_entry(folder: str, error: str, seconds: float | None = None) -> dict:
    """Entry of a folder that failed outside its own run (its worker died, its task failed, it overran)."""
    return {"folder": folder, "name": folder_name(folder), "status": "failed", "seconds": seconds,
            "error": f"{folder}: {error}"}


def timed_out(folder: str, seconds: float) -> dict:
    """Entry of a folder stopped at the time limit (``--timeout``) by whoever ran it."""
    return failed_entry(folder, f"not finished within the time limit of {seconds:g} s (--timeout); "
                                "its worker was stopped", seconds)


def _describe(err: BaseException, folder: str) -> tuple[str, bool]:
    """``(message, known)``: known errors name the file already; others get the folder and a traceback."""
    from dualmode.atomic import OutputWriteError
    from dualmode.errors import InputError
    from dualmode.registration import RegistrationError

    if isinstance(err, (InputError, RegistrationError, OutputWriteError, FolderTimeout)):
        return str(err), True
    if isinstance(err, MemoryError):
        return f"{folder}: out of memory ({err})", True
    return f"{type(err).__name__}: {err} (in {folder})", False


def _process(folder: str, out_root: str, opts, entry: dict, timeout: float | None) -> None:
    from dualmode.pipeline import process_folder
    from dualmode.provenance import peak_rss_mb

    name = entry["name"]
    try:
        with time_limit(timeout, folder):
            log.info("%s: start on %s (dualmode %s)", folder, entry["worker"], __version__)
            reset_peak_rss()
            report = process_folder(folder, out_root, opts).report
        entry.update(status="ok", snr=report["signflip"]["snr"], matched=report["registration"].get("matched"),
                     peak_rss_mb=report.get("peak_rss_mb"))
        if report.get("notes"):
            entry["note"] = "; ".join(report["notes"])
        if report.get("flags"):  # results the pipeline cannot fully vouch for, with the reason
            entry["flags"] = report["flags"]
    except Exception as err:  # fault isolation: record and go on
        entry["error"], known = _describe(err, folder)
        if known:
            log.error("%s: %s", name, entry["error"], extra={"folder_only": True})
        else:
            log.exception("%s: unexpected failure", name, extra={"folder_only": True})
        entry["peak_rss_mb"] = peak_rss_mb()


def run_one(folder: str, out_root: str, options=None, *, resume: bool = False, log_level: int = logging.INFO,
            timeout: float | None = None, threads: int | Mapping[str, int] | None = None,
            forward_level: int | None = None) -> dict:
    """Process one folder into ``out_root/<name>/``; never raises: returns its summary entry.

    Parameters
    ----------
    folder, out_root : str
        Acquisition folder and output root.
    options : PipelineOptions, optional
        Pipeline choices.
    resume : bool
        Skip (``status="skipped"``) when :func:`dualmode.batch.completed_report` finds a
        complete result made from the same inputs with the same options.
    log_level : int
        Lowest level written to ``out_root/<name>/log.txt``.
    timeout : float, optional
        Seconds before the folder fails as not finished (main thread only: ``SIGALRM``).
    threads : int or mapping, optional
        Threads for numba, BLAS and FFT (default: all cores); a mapping gives them per host
        name (:func:`dualmode.batch.threads.host_shares`).
    forward_level : int, optional
        In a Dask worker: also send records at this level and up to the client.

    Examples
    --------
    >>> run_one("my-acq", "out")["status"]      # doctest: +SKIP
    'ok'
    """
    from dualmode.pipeline import PipelineOptions

    t0, cpu0 = time.perf_counter(), time.process_time()
    opts = options or PipelineOptions()
    folder = os.fspath(folder)
    if resume:
        skipped = resume_entry(folder, out_root, opts, log_level=log_level)
        if skipped is not None:
            return skipped
    entry = new_entry(folder)
    out_dir = os.path.join(os.fspath(out_root), entry["name"])
    warm_imports()  # once per process, outside the folder's time limit
    entry["started"] = time.time()
    with _synchronous_dask(), pinned_threads(share_here(threads)), \
            folder_log(os.path.join(out_dir, "log.txt"), log_level, forward_level):
        entry["threads"] = effective_threads()
        _process(folder, out_root, opts, entry, timeout)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        entry["cpu_s"] = round(time.process_time() - cpu0, 3)  # all threads; above seconds: parallel kernels
        log.info("%s: %s in %.1f s", entry["name"], entry["status"], entry["seconds"])
    entry["finished"] = time.time()
    return jsonable(entry)
