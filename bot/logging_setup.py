"""Logging configuration, applied once by an entry point (the bot or the CLI).

Secrets (the Discord token) are replaced when a line is formatted, so they are kept out
of every part of it: the message, an exception's text, a traceback. The worker pool's
processes log through this process (see `stylizer.pool`), so the same applies to theirs.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from types import TracebackType

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, traceback and stack included, has `secrets`
    replaced: code never logs the token on purpose, but a library's debug output or an
    exception's text might contain it."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def setup_logging(level: str = "INFO", *, secrets: list[str] | None = None) -> None:
    """Logs to stderr at `level`; `secrets` never appear in the output. Exceptions that
    nothing caught are logged too, rather than printed past the redaction."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(FORMAT, secrets or []))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The SQL echo and the HTTP client's chatter are noise at INFO.
    for noisy in ("sqlalchemy.engine", "aiosqlite", "alembic.runtime.migration",
                  "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    sys.excepthook = log_uncaught
    threading.excepthook = log_uncaught_in_thread


def log_uncaught(exc_type: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> None:
    """`sys.excepthook`: the traceback through logging (and its redaction)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger().critical("uncaught exception", exc_info=(exc_type, exc, tb))


def log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """`threading.excepthook`: the traceback through logging (and its redaction)."""
    if args.exc_type is SystemExit:
        return
    logging.getLogger().critical("uncaught exception in thread %s",
                                 args.thread.name if args.thread else "?",
                                 exc_info=args.exc_value)
