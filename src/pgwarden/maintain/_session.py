"""Session plumbing of the maintenance modules: autocommit, settings, savepoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

LOCK_TIMEOUT = "55P03"

_SET_CONFIG = text("SELECT set_config(:name, :value, false)")


def is_autocommit(conn: Connection) -> bool:
    """Return whether ``conn`` runs each statement in its own transaction."""
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


@contextmanager
def guarded(conn: Connection) -> Iterator[None]:
    """Keep a failing statement from aborting the caller's transaction, if there is one."""
    with nullcontext() if is_autocommit(conn) else conn.begin_nested():
        yield


@contextmanager
def session_settings(conn: Connection, settings: dict[str, str]) -> Iterator[None]:
    """Apply ``settings`` to the session, then put the old values back.

    Values are bound parameters of ``set_config``, never pasted into a ``SET``.
    """
    previous = {
        name: conn.execute(text("SELECT current_setting(:name)"), {"name": name}).scalar_one()
        for name in settings
    }
    for name, value in settings.items():
        conn.execute(_SET_CONFIG, {"name": name, "value": value})
    try:
        yield
    finally:
        if not conn.invalidated and not conn.closed:
            # Best effort after an interrupt: a connection that cannot take it is
            # closed by its owner anyway, and its settings go with it.
            with suppress(DBAPIError):
                for name, value in previous.items():
                    conn.execute(_SET_CONFIG, {"name": name, "value": value})
