"""Logging for the command-line tools: one stderr handler on the package loggers (and `__main__`).

Modules log through `logging.getLogger(__name__)` (or `accelerate.logging.get_logger(__name__)` inside an
Accelerate run, which logs on the main process only); a CLI calls `setup_logging()` once in `main`.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"
PACKAGE_LOGGERS = ("training", "usvcl_hf", "experiments", "__main__")  # __main__: a module run with -m


class CliHandler(logging.StreamHandler):
    """The stderr handler `setup_logging` installs (told apart from others so a second call replaces it)."""


def setup_logging(level: int = logging.INFO) -> None:
    """Send records of `level` and above from the package loggers to the current `sys.stderr`."""
    handler = CliHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    for name in PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [old for old in logger.handlers if not isinstance(old, CliHandler)] + [handler]
        logger.setLevel(level)


__all__ = ["setup_logging"]
