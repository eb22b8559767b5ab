"""Quote names and run generated DDL for the ORM patterns.

Every ``*_sql`` function of :mod:`pgwarden.orm` builds statements from names, never
from values, so the rules here are the whole of its defence against injection:
identifiers are quoted the way SQLAlchemy quotes them for PostgreSQL, anything placed
inside a string literal is escaped or checked against a strict pattern first.

The statements must also read the same whichever way they are run: Alembic's
``op.execute`` and ``text()`` take ``:name`` for a parameter, and a driver whose
placeholders are ``%s`` takes ``%`` for one when it is given parameters. So no
generated statement holds a ``%`` or a ``:`` followed by a letter: a name that has one
is written with Unicode escapes (``U&"a\\0025b"`` is ``"a%b"``), and a literal that
has one with hex escapes (``E'a\\x25b'``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from pgwarden._sql import qualified, quote_identifier
from pgwarden.errors import UserError

__all__ = [
    "as_table",
    "check_setting",
    "creator",
    "dollar_quote",
    "run",
    "string_literal",
    "table_name",
]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SETTING = re.compile(rf"^{_NAME}\.{_NAME}$")


def table_name(table: str, schema: str | None = None, *, plain: bool = False) -> str:
    """Return ``schema.table`` (or ``table``), each part quoted as by ``quote_identifier``."""
    if schema:
        return qualified(schema, table, plain=plain)
    return quote_identifier(table, plain=plain)


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
    escaped = text.replace("\\", "\\\\").replace("'", "''")
    return "E'" + escaped.replace("%", "\\x25").replace(":", "\\x3a") + "'"


def dollar_quote(body: str) -> str:
    """Return ``body`` between dollar quotes whose tag does not occur in it."""
    tag, n = "$pgwarden$", 0
    while tag in body:
        n += 1
        tag = f"$pgwarden_{n}$"
    return f"{tag}\n{body}\n{tag}"


def check_setting(setting: str) -> str:
    """Return ``setting`` if it is a custom setting name (``app.tenant_id``), else raise."""
    if not isinstance(setting, str) or not _SETTING.match(setting):
        raise UserError(
            f"{setting!r} is not a custom setting name.",
            hint="Use two identifiers joined by a dot, such as pgwarden.tenant_id.",
        )
    return setting


def run(connection: Connection, statements: Iterable[str]) -> None:
    """Execute generated ``statements`` on ``connection``, in order, exactly as written.

    Without parameters the driver sends the text as it is: nothing is parsed as a
    placeholder, whatever the names hold.
    """
    for statement in statements:
        connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


def creator(statements: list[str]) -> Callable[..., None]:
    """Return an ``after_create`` listener that runs ``statements``."""

    def create(target: Any, connection: Connection, **kw: Any) -> None:
        run(connection, statements)

    return create
