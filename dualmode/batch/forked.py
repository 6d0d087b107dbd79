"""Local worker processes forked from this process once it has imported the pipeline: no cluster.

On one machine the fastest way to run folders side by side is to import the pipeline once,
here, and ``fork`` the workers from that state: a worker starts in milliseconds, shares the
imported modules' memory with this process (copy on write) and pays no import of its own;
there is no scheduler, no nanny, no network. This process only hands out folders (one at a
time per worker) and accounts for them.

* Each worker runs :func:`dualmode.batch.run_one` in its main thread with its share of the
  cores (``workers x threads = cores``); the folder's time limit is its ``SIGALRM``, and this
  process stops a worker that overruns it by :data:`GRACE_S` (stuck in native code).
* A worker that dies (killed, out of memory, crashed) is replaced; its folder is tried once
  more on a new worker, then reported failed with the signal. Workers offer themselves to
  Linux's out-of-memory killer first (``oom_score_adj`` 500), so that it ends a folder, not
  the batch.
* Ctrl-C / SIGTERM: the workers ignore SIGINT and are killed by this process at once.
* ``fork`` is only used while this process is fork-safe: it runs no folder itself, has no
  other thread and has started no numba thread pool (a numba pool does not survive a fork).
  Otherwise (and on systems without fork) the workers start with ``forkserver`` or
  ``spawn``: same behaviour, slower start.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time

from .folder import failed_entry, run_one, timed_out
from .warm import preload_in_forkserver, warm_imports

log = logging.getLogger("dualmode")
#: seconds a worker may overrun the folder's time limit before this process kills it
GRACE_S = 10.0
#: how often the dispatcher wakes up to check time limits (s)
POLL_S = 0.5


def start_method() -> str:
    """``fork`` when this process may fork (one thread, no numba thread pool started), else
    ``forkserver`` (or ``spawn``)."""
    import threading

    methods = multiprocessing.get_all_start_methods()
    numba_parallel = sys.modules.get("numba.np.ufunc.parallel")
    if "fork" in methods and threading.active_count() == 1 and not getattr(numba_parallel, "_is_initialized", False):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def folder_bytes(folder: str) -> int:
    """Bytes of the files under ``folder`` (a folder's work grows with its data)."""

    size = 0
    for here, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(here, name)).st_size
    return size


def largest_first(folders: list[str]) -> list[str]:
    """``folders`` in the order to hand them out: largest first, so that no big folder starts last
    and keeps one worker busy while the others idle (ties keep the input order)."""
    sizes = {f: folder_bytes(f) for f in folders}
    return sorted(folders, key=lambda f: -sizes[f])


def _serve(conn, kw: dict) -> None:
    """Worker loop: receive a folder, send back its entry; ``None`` or a closed pipe ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (inherited by fork)
    with contextlib.suppress(OSError):  # out of memory: the kernel kills a worker (replaced), not the batch
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("500")
    warm_imports()  # a no-op after fork; forkserver/spawn workers import here, before the first folder
    while True:
        try:
            folder = conn.recv()
        except (EOFError, OSError):
            return
        if folder is None:
            return
        entry = run_one(folder, **kw)
        try:
            conn.send(entry)
        except (BrokenPipeError, OSError):  # the parent is gone (killed): its outputs are whole anyway
            return


class _Worker:
    """One worker process, its pipe and the folder it runs."""

    def __init__(self, ctx, kw: dict):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, kw), name="dualmode-worker", daemon=True)
        self.process.start()
        child.close()
        self.folder: str | None = None
        self.started = 0.0

    def give(self, folder: str) -> None:
        self.folder, self.started = folder, time.monotonic()
        self.conn.send(folder)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.conn.close()


def died(folder: str, worker: _Worker, tries: int) -> dict:
    """Entry of a folder whose worker process died under it (after ``tries`` tries)."""
    code = worker.process.exitcode
    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exit code {code}")
    return failed_entry(folder, f"its worker process died ({how}, e.g. out of memory) in each of {tries} tries")


class ForkedWorkers:
    """``n`` worker processes running :func:`run_one` with ``kw``; :meth:`run` reports every folder.

    Parameters
    ----------
    n : int
        Worker processes (at most one folder each at a time).
    kw : dict
        Keyword arguments of :func:`run_one` (``threads`` = each worker's share of the cores).
    timeout : float, optional
        The folders' time limit (s), enforced by each worker; this process stops a worker
        that overruns it by :data:`GRACE_S`.
    method : str, optional
        Start method (default: :func:`start_method`).
    """

    def __init__(self, n: int, kw: dict, timeout: float | None = None, method: str | None = None):
        self.method = method or start_method()
        self.ctx = multiprocessing.get_context(self.method)
        if self.method == "forkserver":  # the server imports the pipeline once, its workers fork from it
            preload_in_forkserver(self.ctx)
        self.n, self.kw, self.timeout = n, kw, timeout
        self.workers: list[_Worker] = []
        self.tries: collections.Counter = collections.Counter()

    def run(self, todo: list[str], report) -> None:
        """Run ``todo`` (one folder at a time per worker, largest first) and ``report`` each entry as it
        finishes."""
        queue = collections.deque(largest_first(todo))
        warm_imports()  # here, once, before the fork
        try:
            self.workers = [_Worker(self.ctx, self.kw) for _ in range(min(self.n, len(queue)))]
            while queue or any(w.folder for w in self.workers):
                self._give(queue)
                for entry in self._collect(queue):
                    report(entry)
        except BaseException:
            self.kill()
            raise
        self.close()

    def _give(self, queue) -> None:
        for w in self.workers:
            if w.folder is None and queue:
                w.give(queue.popleft())

    def _collect(self, queue) -> list[dict]:
        """Wait for finished folders, dead workers or the next time check; hand the next folders out
        at once, then return the entries to report (a worker never waits for this process's
        bookkeeping: ``summary.json``, progress, the study report)."""
        busy = [w for w in self.workers if w.folder]
        waits = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(multiprocessing.connection.wait(waits, timeout=POLL_S))
        entries = []
        for w in busy:
            if w.conn in ready or w.process.sentinel in ready:
                entries.append(self._finished(w, queue))
            elif self.timeout and time.monotonic() - w.started > self.timeout + GRACE_S:
                log.warning("%s: time limit of %g s overrun; stopping its worker", w.folder, self.timeout)
                entries.append(timed_out(w.folder, self.timeout))
                self._replace(w, queue)
        self._give(queue)
        return [e for e in entries if e is not None]

    def _finished(self, w: _Worker, queue) -> dict | None:
        """The entry of ``w``'s folder; ``None`` when its worker died and the folder is tried again."""
        folder = w.folder
        try:
            if w.conn.poll():
                entry = w.conn.recv()
                w.folder = None
                return entry
        except (EOFError, OSError):
            pass
        w.process.join(5)
        self.tries[folder] += 1
        entry = None
        if self.tries[folder] < 2:
            log.warning("%s: worker process %s died; trying the folder once more", folder, w.process.pid)
            queue.appendleft(folder)
        else:
            entry = died(folder, w, self.tries[folder])
        self._replace(w, queue)
        return entry

    def _replace(self, w: _Worker, queue) -> None:
        """Stop ``w``; a new worker takes its place while folders are waiting."""
        w.kill()
        if queue:
            self.workers[self.workers.index(w)] = _Worker(self.ctx, self.kw)
        else:
            self.workers.remove(w)

    def close(self) -> None:
        """Ask idle workers to exit; do not wait for them (they exit on their own or with this process)."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.conn.send(None)
                w.conn.close()

    def kill(self) -> None:
        for w in self.workers:
            w.kill()
