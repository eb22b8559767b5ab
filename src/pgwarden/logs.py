"""Configure pgwarden's logging: plain text or JSON lines, never a secret.

Every record passes a filter that scrubs passwords from URLs and ``password=`` pairs,
in the message and in its arguments, whoever logged it; so a driver's error that quotes
a connection string cannot leak one either.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from pgwarden.urls import redact_text

__all__ = ["RedactSecrets", "configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "pgwarden"


class RedactSecrets(logging.Filter):
    """Replace passwords in a record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = redact_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact_text(value))
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def configure_logging(
    *,
    level: int | str = logging.WARNING,
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
    logger: str = "pgwarden",
) -> logging.Handler:
    """Send ``logger``'s records to ``stream`` (stderr) as text or JSON lines.

    Calling it again replaces the handler it installed before, so the CLI and tests can
    reconfigure freely. Returns the handler.
    """
    target = logging.getLogger(logger)
    for handler in list(target.handlers):
        if handler.get_name() == _HANDLER_NAME:
            target.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    target.addHandler(handler)
    target.setLevel(level)
    target.propagate = False
    return handler
