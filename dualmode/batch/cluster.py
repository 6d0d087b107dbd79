"""Folders on Dask: a loopback-only local cluster, one folder per worker, time limits, fast stop.

* The local ``LocalCluster`` scheduler, nannies and workers listen on 127.0.0.1 only; the
  dashboard too unless asked (``dashboard="0.0.0.0:8787"``); workers have no dashboard.
* ``worker-saturation`` 1.0 and one thread per worker: a worker is sent one folder at a time.
* Workers are forked from a forkserver that imported the pipeline once (:func:`start_method`),
  with glibc's default malloc tuning (not Dask's ``MALLOC_TRIM_THRESHOLD_``).
* A folder running longer than the time limit is cancelled and its worker restarted (local
  cluster; on a remote scheduler it is cancelled and reported, its worker stays busy).
* On Ctrl-C / SIGTERM the local worker processes are killed at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid

from .folder import failed_entry, run_one, timed_out
from .logs import LOG_TOPIC, show_forwarded
from .resume import folder_name
from .threads import thread_env
from .warm import preload_in_forkserver

log = logging.getLogger("dualmode")
POLL_S = 0.5


def start_method() -> str:
    """How local workers start: ``forkserver`` where there is one (POSIX), else Dask's setting.

    A forkserver imports distributed, numpy, scipy, SimpleITK, zarr and the pipeline once
    (:mod:`dualmode.batch.preload`) and forks every worker from that state, so a worker
    starts in a fraction of a second instead of re-importing everything (``spawn``: seconds
    per worker, all of them at once on the same cores). A method set by the user
    (``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD``, Dask config) is kept.
    """
    import multiprocessing

    import dask

    configured = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    user_set = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD" in os.environ or configured != "spawn"
    if user_set or "forkserver" not in multiprocessing.get_all_start_methods():
        return configured
    return "forkserver"


def _preload_forkserver() -> None:
    """Add the pipeline's heavy modules to Dask's forkserver preload (before it starts)."""
    from distributed.utils import get_mp_context

    # Dask's context sets its own preload list (distributed, numpy...) the first time;
    # pandas is Dask's choice, not needed by a folder
    preload_in_forkserver(get_mp_context(), drop=("pandas",))


#: fewer wake-ups of a worker's event loop while its one thread computes a folder (each takes the
#: GIL from it): no statistical profiler (10 ms samples), loop tick and system monitor at 1-2 s;
#: the memory monitor (the nanny's memory limit) keeps Dask's interval
QUIET_WORKER = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                "distributed.admin.system-monitor.interval": "2s"}


def worker_config():
    """Dask settings of the local workers, for as long as the cluster lives (restarted workers too).

    One folder at a time per worker (``worker-saturation`` 1.0), started by
    :func:`start_method`, :data:`QUIET_WORKER`, and glibc's default malloc tuning: Dask sets
    ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's dynamic mmap threshold, so every
    array > 128 KiB is mmapped and page-faulted afresh (measured: ~20 % more CPU per folder).
    """
    import dask

    method = start_method()
    stack = contextlib.ExitStack()
    stack.enter_context(dask.config.set({"distributed.scheduler.worker-saturation": 1.0,
                                         "distributed.worker.multiprocessing-method": method,
                                         "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                                         **QUIET_WORKER}))
    if method == "forkserver":
        _preload_forkserver()
    return stack


def local_cluster(workers: int, dashboard: str | None = "127.0.0.1:0"):
    """A ``LocalCluster`` of ``workers`` single-threaded processes bound to the loopback,
    with :func:`worker_config` (keep it set while the cluster runs)."""
    import dask
    from distributed import LocalCluster

    preload = list(dask.config.get("distributed.worker.preload", None) or []) + ["dualmode.batch.warm"]
    with worker_config():
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=dashboard, worker_dashboard_address=None, preload=preload,
                            silence_logs=logging.ERROR, env=thread_env(workers))


def connect(scheduler):
    """A ``Client`` for an address (``tcp://`` or ``tls://``: certificates from Dask's
    ``distributed.comm.tls`` settings) or the given ``Client``; ``(client, owned)``."""
    from distributed import Client
    from distributed.security import Security

    if not isinstance(scheduler, str):
        return scheduler, False
    import re

    scheme, _, rest = scheduler.rpartition("://")
    host_port = scheme == "inproc" or re.fullmatch(r"[\w.\-\[\]:]+:\d+", rest)
    if scheme not in ("", "tcp", "tls", "inproc", "ucx", "ws", "wss") or not host_port:
        raise ValueError(f"--scheduler {scheduler!r}: not a Dask address (tcp://host:port or tls://host:port)")
    security = Security() if scheduler.startswith("tls://") else None  # from the Dask configuration
    return Client(scheduler, security=security), True


def kill_local_workers() -> None:
    """SIGKILL this process's child processes (the local nannies and workers it started)."""
    import psutil

    me = psutil.Process()
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


def task_failed(folder: str, err: BaseException) -> dict:
    """Entry of a folder whose Dask task itself failed (a worker died, e.g. out of memory: KilledWorker)."""
    return failed_entry(folder, f"Dask task failed ({type(err).__name__}: {err})")


class Dispatcher:
    """Submit folders to a client and hand each entry to ``report`` as it finishes."""

    def __init__(self, client, out_root, opts, *, log_level, forward_level, timeout, threads, restart: bool):
        self.client, self.restart, self.timeout = client, restart, timeout
        self.kwargs = dict(out_root=out_root, options=opts, log_level=log_level, timeout=None,
                           threads=threads, forward_level=forward_level)
        self.tag = uuid.uuid4().hex[:8]
        self.futures: dict = {}  # key -> (future, folder)
        self.started: dict = {}
        self.next_check = 0.0
        if forward_level is not None:
            with contextlib.suppress(Exception):
                client.subscribe_topic(LOG_TOPIC, show_forwarded)

    def submit(self, folders: list[str]) -> None:
        if not folders:
            return
        keys = [f"dualmode-{folder_name(f)}-{self.tag}" for f in folders]
        futs = self.client.map(run_one, folders, key=keys, pure=False, **self.kwargs)
        for key, fut, folder in zip(keys, futs, folders):
            self.futures[key] = (fut, folder)

    def _check_time(self, report) -> None:
        now = time.monotonic()
        try:  # tasks *executing* on each worker (a task queued on a worker has not started its clock)
            processing = self.client.run(_executing_keys)
        except Exception:
            return
        for worker, keys in processing.items():
            for key in keys:
                if key not in self.futures:
                    continue
                start = self.started.setdefault(key, now)
                if now - start <= self.timeout:
                    continue
                fut, folder = self.futures.pop(key)
                fut.cancel()
                log.warning("%s: time limit of %g s reached; stopping its worker %s", folder, self.timeout, worker)
                report(timed_out(folder, self.timeout))
                if self.restart:
                    with contextlib.suppress(Exception):
                        self.client.restart_workers([worker], timeout=60, raise_for_error=False)

    def drain(self, report, more=lambda: False) -> None:
        """Report every folder as it finishes; ``more()`` is True while folders may still be submitted."""
        from distributed import wait

        while self.futures or more():
            pending = [fut for fut, _ in self.futures.values()]
            done = ()
            if pending:
                with contextlib.suppress(TimeoutError):
                    done = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED").done
            else:
                time.sleep(POLL_S)
            for key in [k for k, (fut, _) in self.futures.items() if fut in done]:
                fut, folder = self.futures.pop(key)
                try:
                    entry = fut.result()
                except Exception as err:  # KilledWorker, CommClosedError, ...
                    entry = task_failed(folder, err)
                report(entry)
                fut.release()
            if self.timeout and time.monotonic() >= self.next_check:
                # asking every worker what it runs costs each of them a wake-up: check as often as
                # 1 % of the limit needs (0.5 s to 5 s), not every poll
                self.next_check = time.monotonic() + min(5.0, max(POLL_S, self.timeout / 100))
                self._check_time(report)

    def cancel_all(self) -> None:
        for fut, _ in self.futures.values():
            with contextlib.suppress(Exception):
                fut.cancel()
        self.futures.clear()


def _executing_keys(dask_worker) -> list[str]:
    """Keys of the tasks running right now on ``dask_worker`` (run on the worker by ``Client.run``)."""
    return [str(ts.key) for ts in dask_worker.state.executing]


def quiet_distributed():
    """Cluster chatter is not the user's business: ``distributed`` at ERROR for the block."""
    stack = contextlib.ExitStack()
    quiet = logging.getLogger("distributed")
    stack.callback(quiet.setLevel, quiet.level)
    quiet.setLevel(max(logging.ERROR, quiet.getEffectiveLevel()))
    return stack


def close_quietly(*things, timeout: float = 5) -> None:
    for thing in things:
        if thing is None:
            continue
        with contextlib.suppress(Exception):
            thing.close(timeout=timeout) if "timeout" in thing.close.__code__.co_varnames else thing.close()


def pid_of_workers(client) -> list[int]:
    """Process ids of the client's workers (for tests and the start line)."""
    return sorted(client.run(os.getpid).values())
