"""The service's log lines: one format, control characters escaped.

A logged field that carries a newline (an event id, a header) could forge a log line, and other
control characters can hide text on a terminal; every message is written with them escaped
(`\\n`, `\\x1b`). Logs carry counts, sources, types, route templates and the engine's own ids
(instances, actions, dead letters), never names, patient identifiers or payloads: dead letters
keep payloads, that is their job.
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`, `\\u2028`)."""

    def escaped(match: re.Match[str]) -> str:
        return match.group().encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(escaped, text)


class SafeFormatter(logging.Formatter):
    """A formatter that escapes control characters in the message (not in the traceback that
    may follow it, whose lines are the formatter's own)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def configure_logging(level: int = logging.INFO) -> None:
    """The root logger writes to stderr through `SafeFormatter`; uvicorn's loggers go there."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
