"""Fault injection for the batch tests, imported by ``dualmode run`` subprocesses and their Dask workers.

Activated through environment variables (set by the tests, never in normal use):

``DUALMODE_INJECT_SLEEP``
    Folders whose name starts with this prefix sleep for an hour inside the pipeline
    (a stuck folder: ``--timeout`` must end it).
``DUALMODE_INJECT_CRASH``
    Folders whose name starts with this prefix SIGKILL the process running them (a worker
    dying under a folder, as the kernel's out-of-memory killer does).
``DUALMODE_INJECT_KILL_AT``
    SIGKILL this process right before its N-th file-system call (rename, replace, unlink,
    remove, rmdir, mkdir) made while writing outputs; ``0`` only counts and prints
    ``fs-calls N`` at exit.

Workers import it through Dask's ``distributed.worker.preload`` setting; the parent with
``python -c "import dualmode_inject; ..."``.
"""

import atexit
import os
import signal
import sys
import time

_SLEEP = os.environ.get("DUALMODE_INJECT_SLEEP")
_KILL = os.environ.get("DUALMODE_INJECT_KILL_AT")
_CRASH = os.environ.get("DUALMODE_INJECT_CRASH")


def _install_sleep(prefix: str, crash: bool = False) -> None:
    import dualmode.pipeline as pipeline

    real = pipeline.analyse_folder

    def analyse(folder, *args, **kwargs):
        if os.path.basename(os.path.normpath(os.fspath(folder))).startswith(prefix):
            if crash:
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"sleeping in {folder}", file=sys.stderr, flush=True)
            time.sleep(3600)
        return real(folder, *args, **kwargs)

    pipeline.analyse_folder = analyse


def _install_kill(at: int) -> None:
    import dualmode.outputs as outputs

    state = {"armed": False, "n": 0}
    for name in ("rename", "replace", "unlink", "remove", "rmdir", "mkdir"):
        real = getattr(os, name)

        def wrapped(*args, _real=real, _name=name, **kwargs):
            if state["armed"]:
                state["n"] += 1
                if state["n"] == at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kwargs)

        setattr(os, name, wrapped)
    real_write = outputs.write_outputs

    def write_outputs(*args, **kwargs):
        state["armed"] = True
        try:
            return real_write(*args, **kwargs)
        finally:
            state["armed"] = False

    outputs.write_outputs = write_outputs
    if at == 0:
        atexit.register(lambda: print(f"fs-calls {state['n']}", flush=True))


if _SLEEP:
    _install_sleep(_SLEEP)
if _CRASH:
    _install_sleep(_CRASH, crash=True)
if _KILL is not None:
    _install_kill(int(_KILL))


def dask_setup(worker=None):  # distributed preload hook (the module body already did the work)
    pass
