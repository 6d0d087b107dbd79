"""``run_batch``: plan the folders, choose where they run, account for every one of them."""

from __future__ import annotations

import collections
import contextlib
import glob
import logging
import os
import signal
import threading
import time
from typing import Callable, Iterable

from . import cluster as dk
from .folder import DEFAULT_TIMEOUT, run_one
from .forked import ForkedWorkers
from .outroot import OutputLock, Summary, check_out_root, clean_out_root, source_conflict
from .resume import folder_name, resume_entry
from .threads import default_workers, host_shares, thread_share

log = logging.getLogger("dualmode")

Progress = Callable[[dict, int, int], None]
#: ``scheduler=LOCAL`` (``dualmode run --scheduler local``): a Dask ``LocalCluster`` of ``workers`` processes.
LOCAL = "local"


def expand_folders(args: Iterable[str]) -> list[str]:
    """Expand ``*``, ``?`` and ``[...]`` patterns (for shells that do not) to sorted folders.

    A path that exists is taken literally (``scan[1]`` is never re-globbed); a pattern that
    matches no folder is kept as given, so that it is reported as failed.
    """
    out = []
    for arg in args:
        arg = os.fspath(arg)
        literal = os.path.exists(arg) or not glob.has_magic(arg)
        matches = [] if literal else sorted(p for p in glob.glob(arg) if os.path.isdir(p))
        out.extend(matches or [arg])
    return out


def plan(folders: list[str], out_root: str, overwrite: bool) -> tuple[list[str], list[dict]]:
    """Absolute, de-duplicated folders to run; failed entries for those that cannot run."""
    todo, rejected, seen, names = [], [], set(), {}
    for path in folders:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        name = folder_name(path)
        error = None
        if name in names:
            error = f"{path}: output name {name!r} already used by {names[name]}; rename one of the folders"
        else:
            names[name] = path
            error = source_conflict(out_root, path, overwrite)
        if error:
            rejected.append({"folder": path, "name": name, "status": "failed", "seconds": 0.0, "error": error})
        else:
            todo.append(path)
    return todo, rejected


def choose_execution(todo: list[str], workers: int | None, scheduler) -> tuple[str, int, str]:
    """``(mode, workers, reason)``: ``"in-process"``, ``"processes"``, ``"LocalCluster"`` or ``"scheduler"``.

    ``scheduler="local"`` asks for a Dask ``LocalCluster`` of ``workers`` processes; any other
    scheduler is an existing Dask cluster. Otherwise one folder or one core runs in this
    process, and several folders run in worker processes forked from this one after its
    imports (:mod:`dualmode.batch.forked`: no cluster to start, so even two small folders
    gain; measured in ``benchmarks/bench_batch.py``).
    """
    if scheduler is not None and scheduler != LOCAL:
        return "scheduler", 0, "--scheduler given"
    cores = default_workers()
    n = max(1, min(workers or cores, len(todo)))
    if scheduler == LOCAL:
        return "LocalCluster", n, f"--scheduler local: a Dask LocalCluster of {n} worker processes"
    if n == 1:
        why = "-j 1" if workers == 1 else ("one folder" if len(todo) <= 1 else "one core")
        return "in-process", 1, why
    chosen = f"--workers {workers}" if workers else f"{len(todo)} folders on {cores} cores"
    return "processes", n, (f"{chosen}: {n} worker processes forked after the imports (no cluster start), "
                            f"{thread_share(n)} thread(s) each")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt in the main thread for the block (same clean stop as Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _in_process(todo, report, kw) -> None:
    for folder in todo:
        report(run_one(folder, **kw))


def _local_overlapped(todo, report, kw, n, dashboard, execution, timeout) -> None:
    """Start the local cluster in a thread while this process works through the first folders."""
    from distributed import Client

    queue, lock, ready, box = collections.deque(todo), threading.Lock(), threading.Event(), {}

    def start() -> None:
        try:
            box["cluster"] = dk.local_cluster(n, dashboard)
            box["client"] = Client(box["cluster"])
            box["dispatcher"] = dk.Dispatcher(box["client"], kw["out_root"], kw["options"], timeout=timeout,
                                              log_level=kw["log_level"], forward_level=kw["forward_level"],
                                              threads=thread_share(n), restart=True)
            execution["dashboard"] = box["cluster"].dashboard_link if dashboard else None
            with lock:
                rest = list(queue)
                queue.clear()
                box["dispatcher"].submit(rest)
        except Exception as err:  # pragma: no cover - e.g. no free port
            box["error"] = err
        finally:
            ready.set()

    execution["start_method"] = dk.start_method()
    starter = threading.Thread(target=start, name="dualmode-cluster-start", daemon=True)
    starter.start()
    local = {**kw, "threads": None}
    interrupted = False
    try:
        while True:
            with lock:
                folder = queue.popleft() if queue and not ready.is_set() else None
            if folder is None:
                break
            report(run_one(folder, **local))
            execution["in_process_while_starting"] = execution.get("in_process_while_starting", 0) + 1
        while not ready.wait(dk.POLL_S):
            pass
        if "error" in box:
            log.warning("local cluster did not start (%s); running in this process", box["error"])
            _in_process(list(queue), report, local)
            return
        box["dispatcher"].drain(report)
    except BaseException:
        interrupted = True
        dk.kill_local_workers()
        raise
    finally:
        # after Ctrl-C / SIGTERM do not wait for a cluster still starting (its workers may never
        # connect once killed): give it a moment, kill what it started, and leave
        deadline = time.monotonic() + (3.0 if interrupted else float("inf"))
        while not ready.wait(dk.POLL_S) and time.monotonic() < deadline:
            pass
        if interrupted:
            dk.kill_local_workers()
        dk.close_quietly(box.get("client"), box.get("cluster"), timeout=5)


def _remote(todo, report, kw, scheduler, execution, timeout) -> None:
    client, owned = dk.connect(scheduler)
    try:
        execution["dashboard"] = getattr(client, "dashboard_link", None)
        execution["threads_per_host"] = shares = host_shares(client)
        dispatcher = dk.Dispatcher(client, kw["out_root"], kw["options"], timeout=timeout,
                                   log_level=kw["log_level"], forward_level=kw["forward_level"],
                                   threads=shares, restart=False)
        dispatcher.submit(todo)
        try:
            dispatcher.drain(report)
        finally:
            dispatcher.cancel_all()
    finally:
        if owned:
            dk.close_quietly(client, timeout=5)


def _prepare(given, out_root, overwrite, resume, opts, log_level, summary, report) -> list[str]:
    """Clean OUT, refuse what cannot run, skip what ``resume`` finds done; the folders to run."""
    for path in clean_out_root(out_root):
        log.info("removed leftover of a killed run: %s", path)
    todo, rejected = plan(given, out_root, overwrite)
    summary.todo = list(todo)
    for entry in rejected:
        report(entry)
    if not resume:  # checked here so that a finished batch starts no workers at all
        return todo
    pending = []
    for folder in todo:
        entry = resume_entry(folder, out_root, opts, log_level=log_level)
        if entry is None:
            pending.append(folder)
        else:
            report(entry)
    return pending


def run_batch(folders: Iterable[str], out_root: str, options=None, progress: Progress | None = None, *,
              workers: int | None = None, scheduler=None, resume: bool = False, log_level: int = logging.INFO,
              timeout: float | None = DEFAULT_TIMEOUT, overwrite: bool = False,
              dashboard: str | None = "127.0.0.1:0", console_level: int | None = None,
              on_start: Callable[[dict], None] | None = None) -> dict:
    """Process ``folders`` into ``out_root``; write and return the ``summary.json`` content.

    Parameters
    ----------
    folders : iterable of path
        Acquisition folders; the output of each goes to ``out_root/<base name>/``, swapped in
        whole when complete.
    out_root : str
        Output root (created; locked for the run; must not lie inside an input folder).
    options : PipelineOptions, optional
    progress : callable ``(entry, done, total)``, optional
        Called in this process as each folder finishes (in completion order).
    workers : int, optional
        Local worker processes (never more than folders), forked from this process after
        its imports. 1 runs in this process; by default all cores (one folder: in this
        process). With ``scheduler="local"``: the Dask workers. Ignored with another
        ``scheduler``.
    scheduler : str or distributed.Client, optional
        ``"local"``: a Dask ``LocalCluster`` of ``workers`` processes (with its dashboard);
        else the address of an existing Dask scheduler (``tcp://`` or ``tls://``), or a
        ``Client``.
    resume : bool
        Skip folders whose result is complete and inputs, options and version unchanged.
    log_level : int
        Lowest level written to each ``log.txt``.
    timeout : float, optional
        Seconds per folder before it fails as not finished (None or 0: no limit).
    overwrite : bool
        Replace ``OUT/<name>`` even when it holds the result of another source folder.
    dashboard : str, optional
        Address of the ``scheduler="local"`` cluster's Dask dashboard (loopback by default;
        None: none).
    console_level : int, optional
        Records at this level and up from Dask workers are shown in this process.
    on_start : callable ``(info)``, optional
        Called once the plan is made: ``info`` has ``folders``, ``to_run``, ``execution``.

    Returns
    -------
    summary : dict
        ``state`` (``"finished"`` or ``"interrupted"``), ``folders`` (earlier runs' other
        folders, then this run's in input order), counts ``ok``, ``skipped``, ``failed``,
        ``this_run`` (the counts of this run) and how it ran. While the batch runs,
        ``summary.json`` is rewritten after each folder with ``state`` ``"running"``.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C or SIGTERM, after the workers were stopped and ``summary.json`` written with
        ``state`` ``"interrupted"`` and the unfinished folders failed.
    OutputLocked
        Another run holds ``out_root``.
    ValueError
        ``out_root`` lies inside an input folder, or a malformed scheduler address.
    OSError
        ``out_root`` cannot be created, or the scheduler cannot be reached.

    Examples
    --------
    >>> summary = run_batch(["acq1", "acq2"], "out", workers=2)     # doctest: +SKIP
    >>> summary["ok"], summary["state"]                             # doctest: +SKIP
    (2, 'finished')
    """
    from dualmode.pipeline import PipelineOptions

    out_root = os.path.abspath(os.fspath(out_root))
    given = [os.path.abspath(os.fspath(f)) for f in folders]
    check_out_root(out_root, given)
    os.makedirs(out_root, exist_ok=True)
    execution = {"mode": None, "workers": None, "scheduler": dk_address(scheduler), "resume": resume,
                 "timeout_s": timeout or None}
    kw = dict(out_root=out_root, options=options or PipelineOptions(), log_level=log_level,
              timeout=timeout or None, forward_level=console_level)
    how = dict(workers=workers, scheduler=scheduler, resume=resume, overwrite=overwrite, dashboard=dashboard)
    return _run_locked(given, execution, kw, how, progress, on_start)


def _run_locked(given, execution, kw, how, progress, on_start) -> dict:
    """Hold OUT's lock, keep ``summary.json`` current, turn Ctrl-C/SIGTERM into ``"interrupted"``."""
    with OutputLock(kw["out_root"]):
        summary = Summary(kw["out_root"], given, execution)
        study = _Study(kw["out_root"])

        def report(entry: dict) -> None:
            summary.add(entry)
            summary.write("running")  # a killed run still says how far it got
            if progress:
                progress(entry, len(summary.entries), len(given))
            study.add(entry)  # its page and thumbnail now, while other folders run

        with sigterm_as_interrupt():
            try:
                _execute(given, summary, report, kw, how, on_start)
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
                _mark_unfinished(summary)
        result = summary.write("interrupted" if interrupted else "finished")
        study.write(result)
    result["this_run"] = summary.this_run()
    if interrupted:
        raise KeyboardInterrupt
    return result


class _Study:
    """``OUT/index.html`` (:class:`dualmode.report_html.StudyReport`), built as folders finish and
    written once per batch; it never fails the batch (a failure is logged)."""

    def __init__(self, out_root: str):
        from dualmode.report_html import StudyReport

        self.study = StudyReport(out_root)

    def add(self, entry: dict) -> None:
        try:
            self.study.add(entry)
        except Exception:  # noqa: BLE001 - written again (or reported) at the end
            log.debug("study report row of %s deferred", entry.get("name"), exc_info=True)

    def write(self, summary: dict) -> None:
        from dualmode.report_html import update_study_report

        update_study_report(self.study.out_root, summary, self.study)  # logs instead of raising


def _execute(given, summary, report, kw, how: dict, on_start) -> None:
    """Plan, tell ``on_start``, and run the folders where :func:`choose_execution` says."""
    execution, out_root = summary.execution, kw["out_root"]
    todo = _prepare(given, out_root, how["overwrite"], how["resume"], kw["options"], kw["log_level"], summary,
                    report)
    mode, n, why = choose_execution(todo, how["workers"], how["scheduler"]) if todo else ("nothing to do", 0, "")
    execution.update(mode=mode, workers=n or None, reason=why)
    if on_start:
        on_start({"folders": len(given), "to_run": len(todo), "execution": execution, "out_root": out_root})
    summary.write("running")
    if mode == "in-process":
        _in_process(todo, report, kw)
    elif mode == "processes":
        pool = ForkedWorkers(n, {**kw, "threads": thread_share(n), "forward_level": None}, kw["timeout"])
        execution["start_method"] = pool.method
        pool.run(todo, report)
    elif mode == "LocalCluster":
        with dk.quiet_distributed(), dk.worker_config():  # restarted workers start the same way
            _local_overlapped(todo, report, kw, n, how["dashboard"], execution, kw["timeout"])
    elif mode == "scheduler":
        with dk.quiet_distributed():
            _remote(todo, report, kw, how["scheduler"], execution, kw["timeout"])


def _mark_unfinished(summary) -> None:
    done = {e["folder"] for e in summary.entries}
    for f in summary.todo:
        if f not in done:
            summary.add({"folder": f, "name": folder_name(f), "status": "failed", "seconds": None,
                         "error": f"{f}: not finished: interrupted"})


def dk_address(scheduler) -> str | None:
    """The scheduler address for ``summary.json``."""
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return getattr(getattr(scheduler, "scheduler", None), "address", None) or repr(scheduler)
