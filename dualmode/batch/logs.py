"""Per-folder logs: ``OUT/<name>/log.txt`` collects that folder's ``dualmode`` records.

Under Dask the records a user asked for on the console (``-v``) are also sent from the
worker to the client as ``dualmode-log`` events and shown there as they happen.
"""

from __future__ import annotations

import contextlib
import io as stdio
import logging
import os
import threading

from dualmode.atomic import write_text

log = logging.getLogger("dualmode")
LOG_TOPIC = "dualmode-log"


class _Forward(logging.Handler):
    """Pass records on to the root handlers, except ``folder_only`` ones (the batch's own
    account of a failure, which the summary and progress already give)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "folder_only", False):
            logging.getLogger().handle(record)


class _ToClient(logging.Handler):
    """Send records to the Dask client (``dualmode-log`` event) from a worker."""

    def __init__(self, level: int):
        super().__init__(level)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "folder_only", False):
            return
        try:
            from distributed import get_worker

            get_worker().log_event(LOG_TOPIC, {"name": record.name, "level": record.levelno,
                                               "msg": record.getMessage(), "created": record.created})
        except Exception:  # not in a worker, or the worker is shutting down
            pass


def show_forwarded(event) -> None:
    """Client side of :class:`_ToClient`: re-emit a worker's record in this process."""
    _, msg = event if isinstance(event, tuple) else (None, event)
    record = logging.LogRecord(msg["name"], msg["level"], "(worker)", 0, msg["msg"], None, None)
    record.created = msg["created"]
    logging.getLogger(msg["name"]).handle(record)


_log_lock = threading.Lock()
_log_state: dict = {"users": 0}


def _install(logger: logging.Logger, level: int, handler: logging.Handler) -> None:
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


def _uninstall(logger: logging.Logger, handler: logging.Handler) -> None:
    with _log_lock:
        logger.removeHandler(handler)
        _log_state["users"] -= 1
        if _log_state["users"] == 0:
            logger.removeHandler(_log_state["forward"])
            logger.setLevel(_log_state["level"])
            logger.propagate = _log_state["propagate"]


@contextlib.contextmanager
def folder_log(path: str, level: int, forward_level: int | None = None):
    """Collect this thread's ``dualmode`` records at ``level`` and up; append them to ``path``.

    The file is rewritten atomically (old content + this run) when the block ends. The
    ``dualmode`` logger is lowered to ``level`` for the duration; what it emitted before
    (its former effective level) still reaches the console, nothing more. With
    ``forward_level`` (in a Dask worker) records at that level and up also go to the client.
    """
    logger = logging.getLogger("dualmode")
    buf = stdio.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    me = threading.get_ident()
    handler.addFilter(lambda record: record.thread == me)
    _install(logger, min(level, forward_level or level), handler)
    to_client = None
    if forward_level is not None:
        to_client = _ToClient(forward_level)
        to_client.addFilter(lambda record: record.thread == me)
        logger.addHandler(to_client)
    try:
        yield
    finally:
        if to_client is not None:
            logger.removeHandler(to_client)
        _uninstall(logger, handler)
        try:
            before = ""
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    before = f.read()
            write_text(path, before + buf.getvalue())  # appended, atomically
        except OSError as err:
            log.warning("could not write %s: %s", path, err)
