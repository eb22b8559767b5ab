"""Quote identifiers for generated SQL so that every layer reads them as written.

A statement pgwarden builds from names goes through SQLAlchemy's ``text()`` (or
Alembic's ``op.execute``), which takes ``:name`` for a bind parameter even inside a
quoted identifier, and through a driver whose placeholders are ``%s``, which takes
``%`` for one whenever parameters are given. Quoting alone does not protect a name from
either, so a name holding ``%`` or ``:`` is written with Unicode escapes
(``U&"a\\0025b"`` is the identifier ``a%b``); every other name is quoted only where
PostgreSQL needs it (``users``, ``"Users"``, ``"select"``).

Names meant for people (a finding's text) or for ``::regclass`` and ``parse_ident``
(which do not know ``U&``) use ``plain=True``: the ordinary ``"..."`` form.

A table a user names (``--table``, an argument) is read by :func:`resolve_table` with
PostgreSQL's own rules, so every command picks the table a query would.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.errors import UserError

__all__ = [
    "KINDS",
    "NAME_HINT",
    "TABLE_KINDS",
    "Relation",
    "find_relation",
    "qualified",
    "quote_identifier",
    "resolve_table",
    "split_table_key",
    "table_key",
]

# "named", so that the preparer leaves a "%" in a name single.
_PREPARER = PGDialect(paramstyle="named").identifier_preparer  # type: ignore[no-untyped-call]
# Characters some layer between a statement and the server reads as a parameter.
_READ_AS_PARAMETER = frozenset("%:")


def quote_identifier(name: str, *, plain: bool = False) -> str:
    """Return ``name`` as a PostgreSQL identifier, safe in any generated statement.

    ``plain`` keeps the ordinary ``"..."`` form even for a ``%`` or ``:``: for text a
    person reads, and for a name passed as a value to ``::regclass``, ``to_regclass`` or
    ``parse_ident``, none of which knows ``U&``.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UserError(
            f"{name!r} is not a usable identifier.", hint="Give a non-empty name without NUL."
        )
    if plain or _READ_AS_PARAMETER.isdisjoint(name):
        return str(_PREPARER.quote(name))
    escaped = "".join(
        f"\\{ord(char):04X}" if char in _READ_AS_PARAMETER else char
        for char in name.replace("\\", "\\\\").replace('"', '""')
    )
    return f'U&"{escaped}"'


def qualified(schema: str, name: str, *, plain: bool = False) -> str:
    """Return ``schema.name``, each part quoted by :func:`quote_identifier`."""
    return f"{quote_identifier(schema, plain=plain)}.{quote_identifier(name, plain=plain)}"


def table_key(schema: str, name: str) -> str:
    """Return ``schema.name`` as pgwarden names a table in reports, bundles and keys.

    Plain where that is unambiguous; a part holding a dot or a double quote is written
    in double quotes (``"a.b".c`` and ``a."b.c"`` are two tables), so that
    :func:`split_table_key` always finds the parts again.
    """
    return f"{_key_part(schema)}.{_key_part(name)}"


def split_table_key(key: str) -> tuple[str, str]:
    """Return ``(schema, name)`` of a :func:`table_key`; a key without a dot is in ``public``."""
    schema, rest = _take_part(key)
    if not rest.startswith("."):
        return "public", schema
    name, rest = _take_part(rest[1:])
    if rest:
        raise ValueError(f"{key!r} is not schema.name")
    return schema, name


def _key_part(part: str) -> str:
    return '"' + part.replace('"', '""') + '"' if "." in part or '"' in part else part


def _take_part(text: str) -> tuple[str, str]:
    """Return the first part of ``text`` (quoted or up to a dot) and what follows it."""
    if not text.startswith('"'):
        part, dot, rest = text.partition(".")
        return part, dot + rest
    chars, i = [], 1
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] == '"':
                chars.append('"')
                i += 2
                continue
            return "".join(chars), text[i + 1 :]
        chars.append(text[i])
        i += 1
    raise ValueError(f"{text!r} has an unclosed quote")


# pg_class.relkind of what a command that takes a table may act on, and how to say it.
TABLE_KINDS = ("r", "p")
KINDS = {
    "r": "table",
    "p": "partitioned table",
    "m": "materialized view",
    "i": "index",
    "I": "partitioned index",
    "v": "view",
    "S": "sequence",
    "f": "foreign table",
    "t": "TOAST table",
    "c": "composite type",
}
NAME_HINT = (
    "Write the name as in SQL: name or schema.name, the search path applies and unquoted "
    "names are folded to lower case, so quote capitals, dots and spaces "
    "('public.\"Order Items\"'). `pgwarden analyze --dry-run` lists every table as SQL "
    "names it. The role also needs USAGE on the schema to see it."
)

_BY_NAME = text(
    """
SELECT c.oid::bigint AS oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind::text AS kind
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(:name)
"""
)


@dataclass(frozen=True)
class Relation:
    """A relation a name resolved to; ``kind`` is its ``pg_class.relkind``."""

    oid: int
    schema: str
    name: str
    kind: str


def find_relation(conn: Connection, name: str) -> Relation | None:
    """Return the relation ``name`` names in this session, as a query would read it.

    ``name`` is ``name`` or ``schema.name``: unquoted parts fold to lower case, quoted
    ones keep case and dots, and a name without a schema is looked up on the search
    path (``to_regclass``). Returns ``None`` when nothing is called that; raises
    :class:`ValueError` with PostgreSQL's words when ``name`` is not a name at all.
    """
    # An all-digit string is an OID to to_regclass on PostgreSQL 16+ and an unknown
    # name before; a table whose name is digits must be written quoted anyway.
    if not name.strip() or name.strip().isdigit():
        return None
    autocommit = bool(getattr(conn.connection.dbapi_connection, "autocommit", False))
    try:
        # On PostgreSQL 15 and older to_regclass raises on a name it cannot parse; a
        # savepoint keeps that from aborting the caller's transaction.
        with nullcontext() if autocommit else conn.begin_nested():
            row = conn.execute(_BY_NAME, {"name": name}).first()
    except DBAPIError as error:
        raise ValueError(str(error.orig or error).splitlines()[0]) from None
    return None if row is None else Relation(int(row.oid), row.schema, row.name, row.kind)


def resolve_table(
    conn: Connection, name: str, *, kinds: tuple[str, ...] = TABLE_KINDS
) -> tuple[str, str]:
    """Return ``(schema, name)`` of the table ``name`` names, read as :func:`find_relation` does.

    Raises :class:`~pgwarden.errors.UserError` when it names no relation, or one whose
    ``relkind`` is not in ``kinds`` (a view, an index).
    """
    try:
        found = find_relation(conn, name)
    except ValueError as error:
        raise UserError(f"{name!r} is not a table name: {error}.", hint=NAME_HINT) from None
    if found is None:
        raise UserError(f"no table {name!r} in the database.", hint=NAME_HINT)
    if found.kind not in kinds:
        kind = KINDS.get(found.kind, found.kind)
        raise UserError(f"{name!r} is a {kind}, not a table.", hint=NAME_HINT)
    return found.schema, found.name
