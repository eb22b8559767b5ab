"""Give statements a ``statement_timeout`` and a ``lock_timeout``, scoped to a transaction.

Three scopes, the narrowest winning:

- per statement, session or connection: the execution options ``statement_timeout``
  and ``lock_timeout`` (``select(...).execution_options(statement_timeout="2s")``,
  ``sessionmaker(execution_options=timeout_options(statement="5s"))``);
- per request or block: ``with timeouts(statement="2s", lock="500ms"):``, or the
  FastAPI dependency :func:`timeouts_dependency`; blocks nest;
- per engine: the server's own settings, or ``PGWARDEN_STATEMENT_TIMEOUT``.

:func:`enable_timeouts` makes an engine honour them. Before each statement the values
in force are compared with what this transaction already has, and only a change costs a
round trip: one ``SELECT set_config(..., true)``, which is ``SET LOCAL``. Nothing
outlives the transaction, so a pooled connection always goes back with the server's
values. When one fires, the driver's error becomes :class:`StatementTimeout` or
:class:`LockTimeout`, naming the statement (redacted, cut short), the setting and its
value. A connection in autocommit mode has no transaction to scope them to: they are
not applied there, and a warning says so once per engine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from pgwarden._units import parse_duration
from pgwarden.errors import UserError
from pgwarden.orm.errors import LockTimeout, StatementTimeout, TimeoutFired
from pgwarden.urls import redact_text

__all__ = [
    "Timeouts",
    "current_timeouts",
    "enable_timeouts",
    "timeout_options",
    "timeouts",
    "timeouts_dependency",
]

log = logging.getLogger(__name__)

Duration = int | float | str | timedelta
"""A timeout: a number of milliseconds, a duration such as ``"2s"``, or a timedelta.
Zero turns the timeout off."""

SETTINGS = ("statement_timeout", "lock_timeout")
_APPLIED = "pgwarden_timeouts_applied"  # per pooled connection: what this transaction has
_SERVER = "pgwarden_timeouts_server"  # per pooled connection: the server's own values
_UNKNOWN = ("?", "?")  # never equal to a wanted pair: the next statement sets both
_MAX_SQL = 200
_ENABLED = "pgwarden_timeouts_enabled"
_SAVEPOINT_CONTROL = ("SAVEPOINT ", "ROLLBACK TO SAVEPOINT ", "RELEASE SAVEPOINT ")


@dataclass(frozen=True)
class Timeouts:
    """Timeouts in milliseconds; None leaves the one from the wider scope in force."""

    statement_ms: int | None = None
    lock_ms: int | None = None


_scope: ContextVar[Timeouts] = ContextVar(
    "pgwarden_timeouts",
    default=Timeouts(),  # noqa: B039 - frozen, never mutated
)


def to_ms(value: Duration | None, *, name: str) -> int | None:
    """Return ``value`` in whole milliseconds (a bare number is milliseconds)."""
    if value is None:
        return None
    try:
        if isinstance(value, timedelta):
            ms = value / timedelta(milliseconds=1)
        elif isinstance(value, str):
            ms = parse_duration(value, unit="ms") / timedelta(milliseconds=1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            ms = float(value)
        else:
            raise ValueError
    except ValueError:
        raise UserError(
            f"{name}={value!r} is not a duration.",
            hint="Give milliseconds (500), a duration such as '2s', '500ms' or '1min', "
            "or a timedelta; 0 turns the timeout off.",
        ) from None
    if ms < 0:
        raise UserError(f"{name}={value!r} is negative.", hint="Give 0 (off) or more.")
    return round(ms)


def timeout_options(
    *, statement: Duration | None = None, lock: Duration | None = None
) -> dict[str, int]:
    """Return execution options setting the timeouts given, for a statement or a session."""
    options = {
        "statement_timeout": to_ms(statement, name="statement"),
        "lock_timeout": to_ms(lock, name="lock"),
    }
    return {key: value for key, value in options.items() if value is not None}


def current_timeouts() -> Timeouts:
    """Return the timeouts the innermost :func:`timeouts` block puts in force."""
    return _scope.get()


@contextmanager
def timeouts(
    *, statement: Duration | None = None, lock: Duration | None = None
) -> Iterator[Timeouts]:
    """Put the timeouts given in force for the block (a request, a unit of work).

    Works across ``await`` as well as in plain code: the values live in a context
    variable. A timeout not given keeps the value of the enclosing block.
    """
    outer = _scope.get()
    inner = replace(
        outer,
        **{
            key: value
            for key, value in (
                ("statement_ms", to_ms(statement, name="statement")),
                ("lock_ms", to_ms(lock, name="lock")),
            )
            if value is not None
        },
    )
    token = _scope.set(inner)
    try:
        yield inner
    finally:
        _scope.reset(token)


def timeouts_dependency(
    *, statement: Duration | None = None, lock: Duration | None = None
) -> Callable[[], AsyncIterator[Timeouts]]:
    """Return a FastAPI dependency that runs the request inside :func:`timeouts`.

    ``@app.get("/report", dependencies=[Depends(timeouts_dependency(statement="2s"))])``.
    It is async on purpose: FastAPI runs a sync generator dependency in a worker
    thread, whose context would not reach the endpoint.
    """
    timeout_options(statement=statement, lock=lock)  # a bad value fails now, not per request

    async def dependency() -> AsyncIterator[Timeouts]:
        with timeouts(statement=statement, lock=lock) as values:
            yield values

    return dependency


def enable_timeouts(engine: Engine | AsyncEngine) -> None:
    """Make ``engine`` apply the timeouts in force to each transaction, and name them when
    they fire. Calling it again on the same engine does nothing."""
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if getattr(target, _ENABLED, False):
        return
    setattr(target, _ENABLED, True)
    event.listen(target, "before_cursor_execute", _before_cursor_execute)
    event.listen(target, "handle_error", _handle_error)
    for name in ("commit", "rollback"):
        event.listen(target, name, _forget)
    event.listen(target, "rollback_savepoint", _unsure)
    event.listen(target.pool, "connect", _read_server_values)
    event.listen(target.pool, "checkin", _forget_record)
    event.listen(target.pool, "reset", _forget_reset)


# -- applying -------------------------------------------------------------------------


def _wanted(options: Any) -> tuple[int | None, int | None]:
    scope = _scope.get()
    statement = options.get("statement_timeout")
    lock = options.get("lock_timeout")
    return (
        scope.statement_ms if statement is None else to_ms(statement, name="statement_timeout"),
        scope.lock_ms if lock is None else to_ms(lock, name="lock_timeout"),
    )


def _set_config_sql(changes: dict[str, int | None]) -> str:
    # Values are whole numbers formatted here and names come from SETTINGS, so the
    # statement is built without parameters: it runs the same on every driver.
    parts = []
    for name, ms in changes.items():
        value = (
            f"'{int(ms)}'"
            if ms is not None
            else f"(SELECT reset_val FROM pg_catalog.pg_settings WHERE name = '{name}')"
        )
        parts.append(f"pg_catalog.set_config('{name}', {value}, true)")
    return "SELECT " + ", ".join(parts)


def _before_cursor_execute(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> None:
    if context is None or statement.startswith(_SAVEPOINT_CONTROL):
        # A SET LOCAL just inside a savepoint that is then rolled back would be undone.
        return
    wanted = _wanted(context.execution_options)
    applied = conn.info.get(_APPLIED, (None, None))
    if wanted == applied:
        return
    if conn._is_autocommit_isolation():
        if wanted != (None, None) and not conn.engine.__dict__.get("_pgwarden_warned"):
            conn.engine.__dict__["_pgwarden_warned"] = True
            log.warning(
                "timeouts are not applied on connections in autocommit mode: "
                "SET LOCAL needs a transaction"
            )
        return
    changes = {
        name: want for name, want, had in zip(SETTINGS, wanted, applied, strict=True) if want != had
    }
    own = conn.connection.cursor()
    try:
        own.execute(_set_config_sql(changes))
    finally:
        own.close()
    conn.info[_APPLIED] = wanted


def _forget(conn: Connection) -> None:
    conn.info.pop(_APPLIED, None)


def _unsure(conn: Connection, name: str, context: Any) -> None:
    # A savepoint rolled back may undo a SET LOCAL made inside it, or not.
    if _APPLIED in conn.info:
        conn.info[_APPLIED] = _UNKNOWN


def _forget_record(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info.pop(_APPLIED, None)


def _forget_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
    _forget_record(dbapi_connection, record)


def _read_server_values(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT name, setting FROM pg_catalog.pg_settings "
            "WHERE name IN ('statement_timeout', 'lock_timeout')"
        )
        record.info[_SERVER] = {name: int(value) for name, value in cursor.fetchall()}
    finally:
        cursor.close()


# -- naming what fired ----------------------------------------------------------------

_FIRED: dict[str, tuple[str, type[TimeoutFired]]] = {
    "57014": ("statement timeout", StatementTimeout),
    "55P03": ("lock timeout", LockTimeout),
}


def shown_statement(sql: str) -> str:
    """Return ``sql`` fit for an error: secrets redacted, on one line, cut short."""
    text = re.sub(r"\s+", " ", redact_text(sql)).strip()
    return text if len(text) <= _MAX_SQL else text[: _MAX_SQL - 3] + "..."


def _handle_error(context: ExceptionContext) -> BaseException | None:
    original = context.original_exception
    known = _FIRED.get(getattr(original, "sqlstate", None) or "")
    if known is None or known[0] not in str(original):
        return None  # a cancel by hand, a NOWAIT lock: not a timeout
    cls = known[1]
    info = context.connection.info if context.connection is not None else {}
    index = SETTINGS.index(cls.setting)
    applied = info.get(_APPLIED)
    value = applied[index] if applied not in (None, _UNKNOWN) else None
    if value is None:
        value = info.get(_SERVER, {}).get(cls.setting)
    statement = shown_statement(context.statement or "")
    shown_value = f"{value} ms" if value is not None else "its value unknown"
    if cls is StatementTimeout:
        hint = (
            "Make the statement faster (EXPLAIN ANALYZE it, `pgwarden advise`), or give it "
            "more time: .execution_options(statement_timeout='30s') on it, or a wider "
            "timeouts(statement=...) block. Roll the transaction back before going on."
        )
    else:
        hint = (
            "Another session holds a lock this statement needs: keep transactions that "
            "take locks short, retry, or give it longer with lock_timeout. "
            "`pgwarden queries --running` shows who blocks it. Roll the transaction back first."
        )
    return cls(
        f"{cls.setting} ({shown_value}) cancelled the statement: {statement}",
        statement=statement,
        timeout_ms=value,
        hint=hint,
    )
