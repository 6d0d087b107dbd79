"""Threads per folder: every library's thread pool sized to this process's share of the cores.

A local worker gets ``cores // workers`` threads, so that workers x threads = cores (an
oversubscribed numba kernel slows down many times). numba (``numba.set_num_threads``),
BLAS/OpenMP (``threadpoolctl``) and ``scipy.fft`` follow the share; SimpleITK always uses
:data:`ITK_THREADS` threads, because its registration metric sums in thread-dependent
order and results must not depend on how a batch ran (``-j 1``, workers or ``--scheduler``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

from dualmode.recon.blas import ProcessWide

#: Threads of every SimpleITK filter (fixed in every mode: bit-identical registrations).
ITK_THREADS = 1
#: ITK's variable for its global thread count, read when SimpleITK is loaded.
ITK_VARIABLE = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_share(workers: int) -> int:
    """Threads per worker so that ``workers * threads <= cores``."""
    return max(1, default_workers() // max(1, workers))


def thread_env(workers: int) -> dict[str, str]:
    """Environment of each local worker: its share of the cores (values set by the user are kept)."""
    share = str(thread_share(workers))
    env = {v: share for v in THREAD_VARIABLES if v not in os.environ}
    env.setdefault(ITK_VARIABLE, str(ITK_THREADS))
    return env


def host_shares(client) -> dict[str, int]:
    """Threads per folder on each host of a Dask cluster: its cores // the task threads of all
    the workers on it (two 1-thread workers on 2 cores: 1 each, not 2 each)."""
    try:
        per_worker = client.run(_host_cores_slots)  # address -> (host, cores, task threads)
    except Exception:  # no worker reachable yet: the folders fall back to all cores
        return {}
    slots: dict[str, int] = {}
    cores: dict[str, int] = {}
    for host, n_cores, n_slots in per_worker.values():
        slots[host] = slots.get(host, 0) + n_slots
        cores[host] = n_cores
    return {host: max(1, cores[host] // max(1, slots[host])) for host in slots}


def _host_cores_slots(dask_worker=None) -> tuple[str, int, int]:
    """``(host name, cores, task threads)`` of a Dask worker (run there by ``Client.run``)."""
    return socket.gethostname(), default_workers(), getattr(getattr(dask_worker, "state", None), "nthreads", 1)


def share_here(threads: int | Mapping[str, int] | None) -> int | None:
    """``threads`` for this process: a number, or this host's entry of :func:`host_shares`."""
    if isinstance(threads, Mapping):
        return threads.get(socket.gethostname())
    return threads


def effective_threads() -> dict[str, int]:
    """Threads each library would use now in this process (for ``summary.json``: proof, not intent).

    ``numba`` (:func:`numba.get_num_threads`; numba not loaded yet: the ``NUMBA_NUM_THREADS``
    it would start with), ``blas`` (largest pool that threadpoolctl sees: OpenBLAS, MKL,
    OpenMP), ``fft`` (:func:`scipy.fft.get_workers`), ``itk`` (SimpleITK's global default; not
    loaded yet: the count it would start with, from ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``).
    """
    import sys

    import scipy.fft
    from threadpoolctl import threadpool_info

    from dualmode.registration.resample import itk_default_threads

    numba = sys.modules.get("numba")
    nb = numba.get_num_threads() if numba is not None else int(os.environ.get("NUMBA_NUM_THREADS",
                                                                              default_workers()))
    pools = [p.get("num_threads", 1) for p in threadpool_info()]
    return {"numba": nb, "blas": max(pools, default=1), "fft": scipy.fft.get_workers(),
            "itk": itk_default_threads()}


@contextlib.contextmanager
def pinned_threads(threads: int | None):
    """Limit numba, BLAS/OpenMP and ``scipy.fft`` to ``threads`` (None: all cores) and ITK to
    :data:`ITK_THREADS` for the block.

    numba's, OpenMP's and ``scipy.fft``'s settings are per thread and set for the calling thread;
    BLAS pools and ITK are per process and held by :func:`_process_limits` for as long as any
    folder of this process runs.
    """
    import scipy.fft

    n = threads or default_workers()
    # numba first: setting its threads may load its OpenMP runtime, which the limits then cover
    with _numba_threads(n), _limit_pools("openmp", n), _process_limits(n), scipy.fft.set_workers(n):
        yield n


def _limit_pools(user_api: str, n: int):
    """``threadpoolctl`` limit of the ``user_api`` pools only (``threadpool_limits(user_api=...)``
    restores every pool it saw on exit, which would undo another folder's BLAS limit)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api=user_api).limit(limits=n)


_PROCESS_LIMITS = ProcessWide()


def _process_limits(n: int):
    """BLAS pools at ``n`` threads and ITK at :data:`ITK_THREADS`, process-wide.

    Folders of a threaded Dask worker run concurrently in one process: the first to enter sets
    the limits, the last to leave restores them (:class:`~dualmode.recon.blas.ProcessWide`).
    SimpleITK is not loaded for it (a 2D folder never needs it): until a folder loads it, ITK's
    own variable ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` holds the count it will start with.
    """
    def apply():
        restore_blas = _limit_pools("blas", n).restore_original_limits
        restore_itk = _limit_itk(ITK_THREADS)

        def undo():
            restore_blas()
            restore_itk()
        return undo

    return _PROCESS_LIMITS.hold(apply)


def _limit_itk(threads: int):
    """Set ITK's global thread count (loaded) or the variable it starts with (not yet); return the undo."""
    import sys

    sitk = sys.modules.get("SimpleITK")
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() if sitk is not None else None
    variable = os.environ.get(ITK_VARIABLE)
    if sitk is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    os.environ[ITK_VARIABLE] = str(threads)

    def undo():
        loaded = sys.modules.get("SimpleITK")
        if variable is None:
            os.environ.pop(ITK_VARIABLE, None)
        else:
            os.environ[ITK_VARIABLE] = variable
        if loaded is not None:  # loaded before or during the block: back to its count before / its start value
            from dualmode.registration.resample import itk_start_threads

            loaded.ProcessObject.SetGlobalDefaultNumberOfThreads(before if before is not None else itk_start_threads())
    return undo


@contextlib.contextmanager
def _numba_threads(n: int):
    """numba's threads for the block, without importing numba for it (most folders run no numba kernel).

    Loaded numba: ``numba.set_num_threads``. Not loaded yet: when the block asks for fewer
    threads than cores, ``NUMBA_NUM_THREADS`` caps the pool numba starts with if a step of
    the block imports it (removed again when none did).
    """
    import sys

    numba = sys.modules.get("numba")
    if numba is not None:
        before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
        try:
            yield
        finally:
            numba.set_num_threads(before)
        return
    cap = n < default_workers() and "NUMBA_NUM_THREADS" not in os.environ
    if cap:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if cap and "numba" not in sys.modules:
            del os.environ["NUMBA_NUM_THREADS"]
