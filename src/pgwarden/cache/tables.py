"""Find the tables a statement reads and the tables a statement writes.

Names are ``table`` for the ``public`` schema (or none given) and ``schema.table``
otherwise, the same from SQLAlchemy's Table objects and from SQL text parsed by pglast,
so a write through raw SQL invalidates what an ORM query cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from pglast import parser
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import TableClause

from pgwarden.cache.errors import NotCacheable

__all__ = ["EVERYTHING", "read_tables", "sql_read_tables", "table_name", "written_tables"]

EVERYTHING = "*"
"""The name standing for every table: a statement whose writes cannot be told."""

_DML = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
# Statements that change no table's rows; anything else unknown counts as everything.
_HARMLESS = {
    "SelectStmt", "VariableSetStmt", "VariableShowStmt", "TransactionStmt",
    "ExplainStmt", "ListenStmt", "NotifyStmt", "UnlistenStmt", "PrepareStmt",
    "DeallocateStmt", "LockStmt", "DiscardStmt", "CheckPointStmt", "VacuumStmt",
    "CreateStmt", "IndexStmt", "CreateSeqStmt", "CreateSchemaStmt", "CreateRoleStmt",
    "GrantStmt", "GrantRoleStmt", "CommentStmt", "CreateExtensionStmt",
    "DeclareCursorStmt", "FetchStmt", "ClosePortalStmt",
}  # fmt: skip
_MAYBE_WRITE = re.compile(
    r"\b(insert|update|delete|merge|truncate|copy|alter|drop|call|do|refresh|cluster|"
    r"execute|import|reindex|security|rename)\b",
    re.IGNORECASE,
)


def table_name(schema: str | None, name: str) -> str:
    """Return the cache's name of a table."""
    return name if schema in (None, "", "public") else f"{schema}.{name}"


def read_tables(statement: Any, dialect: sa.Dialect) -> frozenset[str]:
    """Return the tables a Core or ORM SELECT reads, joined eager loads included.

    Raise :class:`NotCacheable` for anything else: DML, SELECT ... FOR UPDATE, a
    writable CTE, SQL text that is not one plain SELECT.
    """
    if isinstance(statement, sa.TextClause):
        return sql_read_tables(statement.compile(dialect=dialect).string)
    if not isinstance(statement, sa.Select | sa.CompoundSelect):
        raise NotCacheable(
            f"only SELECT statements can be cached, not {type(statement).__name__}",
            hint="Remove the cache option from this statement.",
        )
    compiled = statement.compile(dialect=dialect)
    core = getattr(compiled.compile_state, "statement", statement)
    for element in visitors.iterate(core):
        if getattr(element, "_for_update_arg", None) is not None:
            raise NotCacheable(
                "a SELECT ... FOR UPDATE/SHARE takes locks and cannot be cached",
                hint="Remove the cache option or the with_for_update() from the statement.",
            )
        if isinstance(element, sa.Insert | sa.Update | sa.Delete):
            raise NotCacheable(
                "a statement with a writing CTE cannot be cached",
                hint="Remove the cache option from this statement.",
            )
    return frozenset(_tables_of(core))


def _tables_of(element: Any) -> Iterator[str]:
    for node in visitors.iterate(element):
        if isinstance(node, sa.Table):
            yield table_name(node.schema, node.name)
        elif isinstance(node, TableClause) and not isinstance(node, sa.Table):
            yield table_name(getattr(node, "schema", None), node.name)


@functools.lru_cache(maxsize=2048)
def sql_read_tables(sql: str) -> frozenset[str]:
    """Return the tables SQL text reads, raising :class:`NotCacheable` unless one SELECT."""
    try:
        tree = parser.parse_sql_json(_numbered(sql))
    except parser.ParseError as exc:
        raise NotCacheable(
            f"the SQL text marked for the cache does not parse: {exc}",
            hint="Check the statement, or leave it uncached.",
        ) from None
    import json

    stmts = json.loads(tree).get("stmts", [])
    kinds = [next(iter(s["stmt"])) for s in stmts]
    if kinds != ["SelectStmt"] or _has(stmts, _DML | {"lockingClause", "intoClause"}):
        raise NotCacheable(
            "only one plain SELECT can be cached (no FOR UPDATE, INTO or writing CTE)",
            hint="Remove the cache option from this statement.",
        )
    ctes = set(_values(stmts, "ctename"))
    names = {
        table_name(rv.get("schemaname"), rv["relname"])
        for rv in _nodes(stmts, "RangeVar")
        if rv.get("schemaname") or rv["relname"] not in ctes
    }
    return frozenset(names)


@functools.lru_cache(maxsize=4096)
def written_tables(sql: str) -> frozenset[str]:
    """Return the tables SQL text may write; ``{EVERYTHING}`` when that cannot be told."""
    if not _MAYBE_WRITE.search(sql):
        return frozenset()
    try:
        import json

        stmts = json.loads(parser.parse_sql_json(_numbered(sql))).get("stmts", [])
    except parser.ParseError:
        return frozenset({EVERYTHING})
    names: set[str] = set()
    for stmt in stmts:
        kind = next(iter(stmt["stmt"]))
        if kind not in _HARMLESS and kind not in _DML and kind != "TruncateStmt":
            if kind == "CopyStmt" and not stmt["stmt"][kind].get("is_from"):
                continue
            return frozenset({EVERYTHING})
    for kind in (*_DML, "CopyStmt"):
        for node in _nodes(stmts, kind):
            if kind != "CopyStmt" or node.get("is_from"):
                rv = node["relation"]
                names.add(table_name(rv.get("schemaname"), rv["relname"]))
    for node in _nodes(stmts, "TruncateStmt"):
        for item in node["relations"]:
            rv = item["RangeVar"]
            names.add(table_name(rv.get("schemaname"), rv["relname"]))
    return frozenset(names)


_DRIVER_PARAMS = re.compile(r"%\(\w+\)s|%s")


def _numbered(sql: str) -> str:
    """Return driver SQL with its placeholders as ``$1``, so that PostgreSQL's parser reads it."""
    return _DRIVER_PARAMS.sub("$1", sql).replace("%%", "%")


def _walk(tree: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _walk(item)


def _nodes(tree: Any, kind: str) -> Iterator[dict[str, Any]]:
    return (value for key, value in _walk(tree) if key == kind and isinstance(value, dict))


def _values(tree: Any, key: str) -> Iterator[Any]:
    return (value for name, value in _walk(tree) if name == key)


def _has(tree: Any, keys: set[str]) -> bool:
    return any(key in keys for key, _ in _walk(tree))
