"""Logging of the command line: the ``dualmode`` logger at the level asked for, other libraries at WARNING."""

from __future__ import annotations

import logging
import os
import sys


class _Only:
    """Log filter of the root handler: ``dualmode`` records at the chosen level, others WARNING and up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "dualmode" or record.name.startswith("dualmode.") or record.levelno >= logging.WARNING


def configure_logging(verbose: int, quiet: bool) -> None:
    """``dualmode`` logger at WARNING / INFO (-v) / DEBUG (-vv) / ERROR (-q); other libraries stay at WARNING."""
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_dualmode_cli", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._dualmode_cli = True
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Only())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("dualmode").setLevel(level)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # distributed's own handler says INFO otherwise
    _quiet_third_party()


def _quiet_third_party() -> None:
    """Libraries imported before this call that set their loggers below WARNING (``distributed``
    sets ``distributed.worker`` etc. to INFO at import) go back to WARNING."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name == "dualmode" or name.startswith("dualmode.") or not isinstance(logger, logging.Logger):
            continue
        if logging.NOTSET < logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
