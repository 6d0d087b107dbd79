"""Run the pipeline over many acquisition folders on Dask, with fault isolation.

Execution
    One worker (or one folder): in this process, one folder after the other.
    Otherwise a ``distributed.LocalCluster`` of worker processes, each processing one
    folder at a time with its share of the cores for numba/ITK/BLAS threads, or any existing
    ``dask.distributed`` scheduler (``scheduler="tcp://host:8786"`` or a ``Client``):
    LocalCluster, SSH, Kubernetes, HPC through dask-jobqueue. Workers must see the
    input and output folders under the same paths and have dualmode installed.
Fault isolation
    :func:`run_one` never raises: an error becomes a ``"failed"`` entry naming the
    file. A worker that dies (segfault, out of memory) is restarted by its nanny and
    the folder is retried by Dask, then reported as failed; the others go on.
    ``OUT/summary.json`` lists every folder with ``status`` ``"ok"``,
    ``"skipped"`` (``resume``) or ``"failed"`` and its error.
Outputs
    Written atomically by :mod:`dualmode.outputs`; leftovers of killed runs are removed
    before a folder is processed again. ``OUT/<name>/log.txt`` holds the folder's own
    ``dualmode`` log records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io as stdio
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable, Iterable

from . import __version__
from .atomic import remove_stale, write_text
from dualmode.serialize import jsonable

from .outputs import write_json
from .pipeline import OUTPUT_FILES, PipelineOptions, input_checksums, peak_rss_mb, process_folder
from .report_html import update_study_report

log = logging.getLogger("dualmode")

Progress = Callable[[dict, int, int], None]


def folder_name(folder: str) -> str:
    """Output name of an acquisition folder (``OUT/<name>/``): its base name."""
    return os.path.basename(os.path.normpath(os.fspath(folder)))


def completed_report(folder: str, out_dir: str, options: PipelineOptions) -> tuple[dict | None, str]:
    """The previous report if ``out_dir`` holds complete, up-to-date outputs of ``folder``.

    Complete: every file of :data:`dualmode.pipeline.OUTPUT_FILES` exists; up to date:
    ``report.json["input_sha256"]`` equals :func:`dualmode.pipeline.input_checksums`
    of the folder now and the options are the same. Returns ``(report, "")`` or
    ``(None, reason)``.
    """
    missing = [f for f in OUTPUT_FILES if not os.path.exists(os.path.join(out_dir, f))]
    if missing:
        return None, "outputs missing: " + ", ".join(missing)
    try:
        with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as err:
        return None, f"report.json unreadable ({err})"
    old, new = report.get("input_sha256") or {}, input_checksums(folder)
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return None, "inputs changed: " + ", ".join(changed)
    if report.get("options") != json.loads(json.dumps(jsonable(dataclasses.asdict(options)))):
        return None, "options changed"
    return report, ""


# --- per-folder log -----------------------------------------------------------------------------

class _Forward(logging.Handler):
    """Pass records at or above the console's former threshold on to the root handlers.

    Records marked ``folder_only`` (the batch's own account of a failure, which the
    summary and progress already give) stay in ``log.txt``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "folder_only", False):
            logging.getLogger().handle(record)


_log_lock = threading.Lock()
_log_state: dict = {"users": 0}


@contextlib.contextmanager
def _folder_log(path: str, level: int):
    """Collect this thread's ``dualmode`` records at ``level`` and up; append them to ``path``.

    The file is rewritten atomically (old content + this run) when the block ends.

    The ``dualmode`` logger is lowered to ``level`` for the duration; what it emitted
    before (its former effective level) still reaches the console, nothing more.
    """
    logger = logging.getLogger("dualmode")
    buf = stdio.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    me = threading.get_ident()
    handler.addFilter(lambda record: record.thread == me)
    with _log_lock:
        if _log_state["users"] == 0:
            before = logger.getEffectiveLevel()
            forward = _Forward(before)
            _log_state.update(level=logger.level, propagate=logger.propagate, forward=forward)
            if logger.propagate:
                logger.propagate = False
                logger.addHandler(forward)
            logger.setLevel(min(level, before))
        else:
            logger.setLevel(min(level, logger.level))
        _log_state["users"] += 1
        logger.addHandler(handler)
    try:
        yield
    finally:
        with _log_lock:
            logger.removeHandler(handler)
            _log_state["users"] -= 1
            if _log_state["users"] == 0:
                logger.removeHandler(_log_state["forward"])
                logger.setLevel(_log_state["level"])
                logger.propagate = _log_state["propagate"]
        try:
            before = ""
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    before = f.read()
            write_text(path, before + buf.getvalue())  # appended, atomically
        except OSError as err:
            log.warning("could not write %s: %s", path, err)


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux >= 4.0: ``VmHWM``), so ``peak_rss_mb`` is per folder."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # other systems: the peak is since the worker started


# --- one folder ---------------------------------------------------------------------------------

def _new_entry(folder: str) -> dict:
    return {"folder": folder, "name": folder_name(folder), "status": "failed", "error": None,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def resume_entry(folder: str, out_root: str, options: PipelineOptions | None = None, *,
                 log_level: int = logging.INFO) -> dict | None:
    """The ``"skipped"`` summary entry of a folder already done (see :func:`completed_report`), else None.

    Either way the decision is appended to ``out_root/<name>/log.txt``.
    """
    t0 = time.perf_counter()
    opts = options or PipelineOptions()
    folder = os.fspath(folder)
    entry = _new_entry(folder)
    out_dir = os.path.join(os.fspath(out_root), entry["name"])
    if not os.path.isdir(out_dir):
        return None
    with _folder_log(os.path.join(out_dir, "log.txt"), log_level):
        report, why = completed_report(folder, out_dir, opts)
        if report is None:
            log.info("%s: resume: to be processed (%s)", entry["name"], why)
            return None
        log.info("%s: resume: outputs complete, inputs and options unchanged: skipped", entry["name"])
    entry.update(status="skipped", snr=report["signflip"]["snr"], matched=report["registration"]["matched"],
                 seconds=round(time.perf_counter() - t0, 3))
    return jsonable(entry)


def run_one(folder: str, out_root: str, options: PipelineOptions | None = None, *,
            resume: bool = False, log_level: int = logging.INFO) -> dict:
    """Process one folder into ``out_root/<name>/``; never raises: returns its summary entry.

    Parameters
    ----------
    folder, out_root : str
        Acquisition folder and output root.
    options : PipelineOptions, optional
        Pipeline choices.
    resume : bool
        Skip (``status="skipped"``) when :func:`completed_report` finds complete outputs
        made from the same inputs with the same options.
    log_level : int
        Lowest level written to ``out_root/<name>/log.txt``.
    """
    from dualmode.io import InputError
    from dualmode.registration import RegistrationError

    t0 = time.perf_counter()
    opts = options or PipelineOptions()
    folder = os.fspath(folder)
    if resume:
        skipped = resume_entry(folder, out_root, opts, log_level=log_level)
        if skipped is not None:
            return skipped
    entry = _new_entry(folder)
    name = entry["name"]
    out_dir = os.path.join(os.fspath(out_root), name)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:  # e.g. the output root is not writable from this worker
        entry.update(error=f"{out_dir}: cannot create the output folder ({err.strerror})",
                     seconds=round(time.perf_counter() - t0, 3))
        return entry
    with _folder_log(os.path.join(out_dir, "log.txt"), log_level):
        try:
            log.info("%s: start on %s (dualmode %s)", folder, entry["worker"], __version__)
            for path in remove_stale(out_dir):
                log.info("removed leftover of a killed run: %s", path)
            reset_peak_rss()
            report = process_folder(folder, out_root, opts).report
            entry.update(status="ok", snr=report["signflip"]["snr"], matched=report["registration"].get("matched"),
                         peak_rss_mb=report.get("peak_rss_mb"))
            if report.get("notes"):
                entry["note"] = "; ".join(report["notes"])
            if report.get("flags"):  # results the pipeline cannot fully vouch for, with the reason
                entry["flags"] = report["flags"]
        except Exception as err:  # fault isolation: record and go on
            known = isinstance(err, (InputError, RegistrationError))
            entry["error"] = str(err) if known else f"{type(err).__name__}: {err} (in {folder})"
            if known:
                log.error("%s: %s", name, err, extra={"folder_only": True})
            else:
                log.exception("%s: unexpected failure", name, extra={"folder_only": True})
            entry["peak_rss_mb"] = peak_rss_mb()
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        log.info("%s: %s in %.1f s", name, entry["status"], entry["seconds"])
    return jsonable(entry)


# --- many folders -------------------------------------------------------------------------------

def expand_folders(args: Iterable[str]) -> list[str]:
    """Expand ``*``, ``?`` and ``[...]`` patterns (for shells that do not) to sorted folders.

    A pattern that matches no folder is kept as given, so that it is reported as failed. A path
    that exists is taken literally, never as a pattern (``scan[1]`` is not ``scan1``).
    """
    out = []
    for arg in args:
        arg = os.fspath(arg)
        pattern = glob.has_magic(arg) and not os.path.exists(arg)
        matches = sorted(p for p in glob.glob(arg) if os.path.isdir(p)) if pattern else []
        out.extend(matches or [arg])
    return out


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _plan(folders: list[str]) -> tuple[list[str], list[dict]]:
    """Absolute, de-duplicated folders; entries for folders whose output name is taken."""
    todo, rejected, seen, names = [], [], set(), {}
    for f in folders:
        path = os.path.abspath(f)
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        name = folder_name(path)
        if name in names:
            rejected.append({"folder": path, "name": name, "status": "failed", "seconds": 0.0,
                             "error": f"{path}: output name {name!r} already used by {names[name]}; "
                                      f"rename one of the folders"})
            continue
        names[name] = path
        todo.append(path)
    return todo, rejected


def _task_failed(folder: str, err: BaseException) -> dict:
    """Entry of a folder whose Dask task itself failed (a worker died, e.g. out of memory: KilledWorker)."""
    return {"folder": folder, "name": folder_name(folder), "status": "failed", "seconds": None,
            "error": f"{folder}: Dask task failed ({type(err).__name__}: {err})"}


THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _thread_env(workers: int) -> dict[str, str]:
    """Each local worker's share of the cores for numba, ITK and BLAS (unless set by the user)."""
    share = str(max(1, default_workers() // workers))
    return {v: share for v in THREAD_VARIABLES if v not in os.environ}


def _run_distributed(todo, out_root, opts, log_level, workers, scheduler, report) -> None:
    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        quiet = logging.getLogger("distributed")  # cluster chatter is not the user's business
        stack.callback(quiet.setLevel, quiet.level)
        quiet.setLevel(max(logging.ERROR, quiet.getEffectiveLevel()))
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR, env=_thread_env(workers)))
            client = stack.enter_context(Client(cluster))
        elif isinstance(scheduler, str):
            client = stack.enter_context(Client(scheduler))
        else:
            client = scheduler  # a Client the caller owns
        tag = uuid.uuid4().hex[:8]
        keys = [f"dualmode-{folder_name(f)}-{tag}" for f in todo]
        futures = client.map(run_one, todo, out_root=out_root, options=opts, log_level=log_level, key=keys)
        folder_of = {fut.key: f for fut, f in zip(futures, todo)}
        for fut in as_completed(futures):
            try:
                entry = fut.result()
            except Exception as err:  # KilledWorker, CommClosedError, ...
                entry = _task_failed(folder_of[fut.key], err)
            report(entry)
            fut.release()


def _address(scheduler) -> str | None:
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return getattr(getattr(scheduler, "scheduler", None), "address", None) or repr(scheduler)


def run_batch(folders: Iterable[str], out_root: str, options: PipelineOptions | None = None,
              progress: Progress | None = None, *, workers: int | None = None, scheduler=None,
              resume: bool = False, log_level: int = logging.INFO) -> dict:
    """Process ``folders`` into ``out_root``; write and return the ``summary.json`` content.

    Parameters
    ----------
    folders : iterable of path
        Acquisition folders; the output of each goes to ``out_root/<base name>/``.
    out_root : str
        Output root (created).
    options : PipelineOptions, optional
    progress : callable ``(entry, done, total)``, optional
        Called in this process as each folder finishes (in completion order).
    workers : int, optional
        Local worker processes (default: all cores; never more than folders).
        1 runs in this process. Ignored with ``scheduler``.
    scheduler : str or distributed.Client, optional
        Address of an existing Dask scheduler, or a connected ``Client``.
    resume : bool
        Skip folders whose outputs are complete and inputs unchanged.
    log_level : int
        Lowest level written to each ``log.txt``.

    Returns
    -------
    summary : dict
        ``state`` (``"finished"``), ``folders`` (one entry per folder, input order), counts
        ``ok``, ``skipped``, ``failed``, and how it ran. While the batch runs,
        ``summary.json`` is rewritten (atomically) after each folder with ``state``
        ``"running"`` and the folders not done yet as ``"pending"``.

    Raises
    ------
    KeyboardInterrupt
        After writing ``summary.json`` with ``state`` ``"interrupted"`` and the
        unfinished folders as failed.
    OSError
        ``out_root`` cannot be created, or the scheduler cannot be reached.

    Examples
    --------
    >>> summary = run_batch(["acq/mouse1", "acq/mouse2"], "out", workers=2)   # doctest: +SKIP
    >>> summary["ok"], summary["failed"]                                      # doctest: +SKIP
    (2, 0)
    """
    opts = options or PipelineOptions()
    out_root = os.path.abspath(os.fspath(out_root))
    os.makedirs(out_root, exist_ok=True)
    started = time.time()
    given = [os.path.abspath(os.fspath(f)) for f in folders]
    order = {f: i for i, f in reversed(list(enumerate(given)))}
    todo, rejected = _plan(given)
    total = len(todo) + len(rejected)
    entries: list[dict] = []
    execution = {"mode": None, "workers": None, "scheduler": _address(scheduler), "resume": resume}
    summary_path = os.path.join(out_root, "summary.json")

    def summary(state: str) -> dict:
        done = {e["folder"] for e in entries}
        rows = entries + [{"folder": f, "name": folder_name(f), "status": "pending"}
                          for f in todo if f not in done]
        rows.sort(key=lambda e: order.get(e["folder"], len(order)))
        return {
            "state": state,
            "folders": rows,
            **{k: sum(e["status"] == k for e in rows) for k in ("ok", "skipped", "failed", "pending")},
            "execution": execution,
            "out_root": out_root,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 3),
            "dualmode": __version__,
        }

    def report(entry: dict) -> None:
        entries.append(entry)
        write_json(summary_path, summary("running"))  # a killed run still says how far it got
        if progress:
            progress(entry, len(entries), total)

    for entry in rejected:
        report(entry)
    if resume:  # checked here so that a finished batch starts no workers at all
        pending = []
        for folder in todo:
            entry = resume_entry(folder, out_root, opts, log_level=log_level)
            if entry is None:
                pending.append(folder)
            else:
                report(entry)
        todo = [f for f in todo if f in pending]
    n = max(1, min(workers or default_workers(), len(todo)))
    if scheduler is None:
        execution["workers"] = n
    interrupted = False
    try:
        if not todo:
            execution["mode"] = "nothing to do"
        elif scheduler is None and n == 1:
            execution["mode"] = "in-process"
            write_json(summary_path, summary("running"))
            for folder in todo:
                report(run_one(folder, out_root, opts, log_level=log_level))
        else:
            execution["mode"] = "LocalCluster" if scheduler is None else "scheduler"
            write_json(summary_path, summary("running"))
            _run_distributed(todo, out_root, opts, log_level, n if scheduler is None else None,
                             scheduler, report)
    except KeyboardInterrupt:
        interrupted = True
        done = {e["folder"] for e in entries}
        entries.extend({"folder": f, "name": folder_name(f), "status": "failed", "seconds": None,
                        "error": f"{f}: not finished: interrupted"} for f in todo if f not in done)
    result = summary("interrupted" if interrupted else "finished")
    del result["pending"]
    write_json(summary_path, result)
    update_study_report(out_root, result)  # OUT/index.html
    if interrupted:
        raise KeyboardInterrupt
    return result
