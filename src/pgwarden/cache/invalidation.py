"""Collect the tables each transaction writes, and publish them when its commit returns.

Writes are seen where they reach the driver (``after_cursor_execute``), whatever made
them: an ORM flush, Core DML, or SQL text (parsed with pglast). The tables gather in
the connection's ``info`` until the transaction ends: a rollback forgets them, a commit
publishes them to Redis right after the database's COMMIT and before ``commit()``
returns to its caller. A statement on an AUTOCOMMIT connection publishes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import visitors

from pgwarden.cache.query_cache import WRITTEN
from pgwarden.cache.tables import table_name, written_tables

if TYPE_CHECKING:
    from pgwarden.cache.query_cache import QueryCache

__all__ = ["track_writes"]


def track_writes(cache: QueryCache, engine: Engine) -> None:
    """Hook ``engine`` so that its commits invalidate what ``cache`` holds."""

    @event.listens_for(engine, "after_cursor_execute")
    def _seen(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        tables = _written(statement, context)
        if not tables:
            return
        if conn._is_autocommit_isolation():
            cache.publish(tables)
        else:
            conn.info.setdefault(WRITTEN, set()).update(tables)

    @event.listens_for(engine, "rollback")
    def _forget(conn: Connection) -> None:
        conn.info.pop(WRITTEN, None)

    commit = engine.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        tables = dbapi_connection.info.pop(WRITTEN, None)
        if tables:
            cache.publish(tables)

    # The dialect is the engine's own; its do_commit is the one place that runs after
    # the database has committed and before Connection.commit() returns.
    engine.dialect.do_commit = do_commit  # type: ignore[method-assign]


def _written(statement: str, context: Any) -> frozenset[str]:
    compiled = getattr(context, "compiled", None)
    if compiled is None:
        return written_tables(statement)
    # A compiled statement is reused for every execution of its shape: work it out once.
    known: frozenset[str] | None = getattr(compiled, "_pgwarden_writes", None)
    if known is None:
        known = _compiled_writes(statement, compiled.statement)
        compiled._pgwarden_writes = known
    return known


def _compiled_writes(statement: str, target: Any) -> frozenset[str]:
    if isinstance(target, sa.Insert | sa.Update | sa.Delete):
        table: Any = target.table
        return frozenset({table_name(getattr(table, "schema", None), table.name)})
    dml = (sa.Insert, sa.Update, sa.Delete)
    if isinstance(target, sa.Select | sa.CompoundSelect) and not any(
        isinstance(node, dml) for node in visitors.iterate(target)
    ):
        return frozenset()
    return written_tables(statement)
