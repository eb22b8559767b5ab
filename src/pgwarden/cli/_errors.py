"""Turn what went wrong into what a user reads: an ``error:`` line, a ``hint:`` line, an
exit code, and a traceback only when asked for with ``-v``.

Error text quotes what the user typed and what storage holds (names, ids, paths), so it is
printed as plain text, never read as Rich markup.
"""

from __future__ import annotations

import json
import os
import re
import select
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

import click
from rich.text import Text
from sqlalchemy import exc as sa_exc

from pgwarden.cli.context import Context, plain_console
from pgwarden.errors import PgwardenError, UserError
from pgwarden.urls import redact_text

__all__ = [
    "InvalidValue",
    "database_error",
    "option_values",
    "report",
    "silence_stdout",
    "stdout_closed",
    "unexpected",
]

# SQLSTATE class 22, data exception: a value that does not read as its type, or does not fit.
_DATA_EXCEPTION = "22"
# "invalid input syntax for type bigint: ...", "value ... is out of range for type integer"
_TYPE = re.compile(r"for type (?P<type>[^:\"]+?)\s*(?::|$)")
# invalid_datetime_format, datetime_field_overflow, invalid_time_zone_displacement_value
_DATETIME = {"22007", "22008", "22009"}
_EXAMPLE = "2026-01-31 or '2026-01-31 12:00+00'"
_REASON_CHARS = 300


class InvalidValue(UserError):
    """Raise when a value given on the command line does not read as the type it must have."""


def report(ctx: click.Context, message: str, hint: str | None, kind: str) -> None:
    """Print an error: one JSON document on stdout with ``--json``, else two lines on stderr."""
    state = ctx.find_object(Context)
    if state is not None and state.json:
        error = {"error": {"type": kind, "message": message, "hint": hint}}
        click.echo(json.dumps(error, sort_keys=True))
        return
    err = plain_console(stderr=True, soft_wrap=True)
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err.print(Text.assemble(("hint:", "bold"), " ", hint))


def database_error(exc: BaseException) -> BaseException | None:
    """Return the driver's error behind ``exc``, or None when ``exc`` is not a database error."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.orig or exc
    # psycopg raised outside SQLAlchemy (a COPY on the raw connection). Not imported here:
    # the CLI starts without it, and if it was never imported it raised nothing.
    driver: type[BaseException] | None = getattr(sys.modules.get("psycopg"), "Error", None)
    return exc if driver is not None and isinstance(exc, driver) else None


def unexpected(ctx: click.Context, exc: BaseException) -> NoReturn:
    """Report an exception nobody expected: one line, exit 1; the traceback only with -v."""
    state = ctx.find_object(Context)
    verbose = state.verbose if state is not None else 0
    if verbose:
        trace = "".join(traceback.format_exception(exc))
        click.echo(redact_text(trace).rstrip(), err=True)
    lines = redact_text(str(exc)).strip().splitlines()
    reason = lines[0] if lines else ""
    if len(reason) > _REASON_CHARS:
        reason = reason[: _REASON_CHARS - 1] + "…"
    kind = type(exc).__name__
    where = "the traceback above" if verbose else "the traceback that -v prints"
    report(
        ctx,
        f"unexpected {kind}: {reason}" if reason else f"unexpected {kind}.",
        f"This is a bug in pgwarden, not in what you asked; please report it with {where}.",
        kind,
    )
    ctx.exit(1)


def stdout_closed() -> bool:
    """Return whether stdout is a pipe or socket whose reader has gone (``| head``).

    A broken pipe to a child process is a failure to report; one on stdout means the
    reader has all it wanted.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file descriptor
        return False


def silence_stdout() -> None:
    """Point stdout at the null device, so that the flush at exit does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


@contextmanager
def option_values(options: Mapping[str, str | None]) -> Iterator[None]:
    """Report a value the database cannot read as its type as a user error naming its option.

    ``options`` maps an option (``--user-id``) to the value given. A data exception
    (SQLSTATE class 22) that quotes one of these values, raised by the database or as the
    cause of a :class:`PgwardenError`, becomes :class:`InvalidValue` saying which option
    to fix and the type it must read as. Any other error passes through unchanged.
    """
    try:
        yield
    except (sa_exc.DBAPIError, PgwardenError) as exc:
        error = _invalid_value(exc, options)
        if error is None:
            raise
        raise error from exc


def _invalid_value(exc: BaseException, options: Mapping[str, str | None]) -> InvalidValue | None:
    cause = exc.__cause__
    orig = database_error(exc) or (database_error(cause) if cause is not None else None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if orig is None or not str(sqlstate or "").startswith(_DATA_EXCEPTION):
        return None
    text = redact_text(str(orig))
    named = [(o, v) for o, v in options.items() if v is not None and f'"{v}"' in text]
    if not named:
        return None
    names = " and ".join(option for option, _ in named)
    value = named[0][1]
    detail = text.strip().splitlines()[0]
    match = _TYPE.search(detail)
    if match is not None:
        return InvalidValue(
            f"{names} {value!r} is not a valid {match['type']}: {detail}",
            hint=f"Give {names} a value PostgreSQL reads as {match['type']}.",
        )
    hint = (
        f"Give {names} a date or time as PostgreSQL reads it, such as {_EXAMPLE}."
        if sqlstate in _DATETIME
        else f"Give {names} a value of the column's type, as PostgreSQL reads it."
    )
    return InvalidValue(f"{names} {value!r} does not fit its column's type: {detail}", hint=hint)
