"""Quote names and run generated DDL for the ORM patterns.

Every ``*_sql`` function of :mod:`pgwarden.orm` builds statements from names, never
from values, so the rules here are the whole of its defence against injection:
identifiers are quoted the way SQLAlchemy quotes them for PostgreSQL, anything placed
inside a string literal is checked against a strict pattern first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import DDL, Table
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from pgwarden.errors import UserError

__all__ = [
    "as_table",
    "check_setting",
    "creator",
    "quote",
    "run",
    "string_literal",
    "table_name",
]

_PREPARER = PGDialect().identifier_preparer  # type: ignore[no-untyped-call]
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SETTING = re.compile(rf"^{_NAME}\.{_NAME}$")


def quote(name: str) -> str:
    """Return ``name`` as a PostgreSQL identifier, quoted when it needs to be."""
    if not name or "\x00" in name:
        raise UserError(
            f"{name!r} is not a usable identifier.", hint="Give a non-empty name without NUL."
        )
    return _PREPARER.quote(name)


def table_name(table: str, schema: str | None = None) -> str:
    """Return ``schema.table`` (or ``table``), each part quoted."""
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def as_table(table: FromClause) -> Table:
    """Return ``table`` (a model's ``__table__``, typed as a FromClause) as the Table it is."""
    if not isinstance(table, Table):
        raise UserError(f"{table!r} is not a table.", hint="Pass a Table, such as Model.__table__.")
    return table


def string_literal(text: str) -> str:
    """Return ``text`` as an escape-string literal, safe whatever the server settings.

    ``E'...'`` reads backslashes the same way whether ``standard_conforming_strings`` is
    on or off, so doubling both backslashes and quotes leaves nothing to break out with.
    """
    if "\x00" in text:
        raise UserError("a SQL literal cannot hold a NUL character.")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def check_setting(setting: str) -> str:
    """Return ``setting`` if it is a custom setting name (``app.tenant_id``), else raise."""
    if not isinstance(setting, str) or not _SETTING.match(setting):
        raise UserError(
            f"{setting!r} is not a custom setting name.",
            hint="Use two identifiers joined by a dot, such as pgwarden.tenant_id.",
        )
    return setting


def run(connection: Connection, statements: Iterable[str]) -> None:
    """Execute generated ``statements`` on ``connection``, in order, without binds.

    They go through :class:`~sqlalchemy.DDL`, which neither parses ``:name`` as a bind
    nor lets the driver read a ``%`` in a quoted name as a placeholder.
    """
    for statement in statements:
        connection.execute(DDL(statement.replace("%", "%%")))  # type: ignore[no-untyped-call]


def creator(statements: list[str]) -> Callable[..., None]:
    """Return an ``after_create`` listener that runs ``statements``."""

    def create(target: Any, connection: Connection, **kw: Any) -> None:
        run(connection, statements)

    return create
