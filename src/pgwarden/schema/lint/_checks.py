"""pgwarden's own rules, read from pglast's parse tree of each statement in order.

The walk keeps what the migration did so far (tables it created, CHECKs it validated,
whether lock_timeout is set, the ACCESS EXCLUSIVE locks its transaction holds), so a
statement is judged in its place: an index on a table created three lines up costs
nothing. What only the database knows (a column's type, a function's volatility, a
CHECK validated by an earlier migration) is asked of a :class:`Catalog` when one is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import ObjectType, TransactionStmtKind, VariableSetKind

from pgwarden._sql import quote_identifier
from pgwarden.schema.lint._alter import alter_table
from pgwarden.schema.lint._locks import lock_hits
from pgwarden.schema.lint._model import (
    Catalog,
    Hit,
    TableRef,
    _cleared_new,
    _in_transaction,
    _name,
    _ref,
    _State,
    column_name,
)
from pgwarden.schema.lint._script import Script, Statement
from pgwarden.schema.lint._types import type_of

__all__ = ["check_script"]

_ENDS = {
    TransactionStmtKind.TRANS_STMT_COMMIT,
    TransactionStmtKind.TRANS_STMT_ROLLBACK,
    TransactionStmtKind.TRANS_STMT_PREPARE,
}


def check_script(
    script: Script, catalog: Catalog | None = None
) -> tuple[list[Hit], dict[int, list[tuple[TableRef, str]]]]:
    """Return what pgwarden's rules find in ``script``, and the locks each statement takes.

    The locks are those on tables that exist before the migration, by statement start.
    """
    state = _State()
    return list(_walk(script, state, catalog)), state.locks


def _walk(script: Script, state: _State, catalog: Catalog | None) -> Iterator[Hit]:
    open_ = False  # a transaction is open before the next statement
    for statement in script.statements:
        if statement.in_transaction and not open_:
            state.transaction += 1
            state.exclusive = {}
        open_ = statement.in_transaction
        hits = list(_statement(statement, state, catalog))
        yield from hits
        _remember(statement.node, state)  # a table's own FK to itself locks nothing else
        yield from lock_hits(statement, state, hits)
        if isinstance(statement.node, ast.TransactionStmt) and statement.node.kind in _ENDS:
            open_ = False
            if state.lock_timeout_local:
                state.lock_timeout = state.lock_timeout_local = False


def _statement(statement: Statement, state: _State, catalog: Catalog | None) -> Iterator[Hit]:
    node = statement.node
    if isinstance(node, ast.VariableSetStmt):
        if node.name == "lock_timeout":
            off = node.kind == VariableSetKind.VAR_SET_VALUE and _is_zero(node.args)
            state.lock_timeout = node.kind == VariableSetKind.VAR_SET_VALUE and not off
            state.lock_timeout_local = bool(node.is_local)
        return
    if isinstance(node, ast.IndexStmt):
        yield from _index(statement, node, state)
    elif isinstance(node, ast.DropStmt):
        yield from _drop(statement, node, state, catalog)
    elif isinstance(node, ast.UpdateStmt | ast.DeleteStmt) and node.whereClause is None:
        table = _ref(node.relation)
        if not state.is_new(table):
            verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
            yield Hit(
                "unbatched-backfill",
                statement,
                table,
                f"{verb} of every row of {_name(table)} in one statement: each row stays "
                "locked, and the migration's transaction stays open, until the last is done.",
                lock="RowExclusiveLock",
            )
    elif isinstance(node, ast.RenameStmt):
        yield from _rename(statement, node, state)
    elif isinstance(node, ast.ReindexStmt):
        concurrent = any(p.defname == "concurrently" for p in node.params or ())
        if concurrent and statement.in_transaction:
            yield _in_transaction(statement, "REINDEX CONCURRENTLY")
        elif not concurrent and node.relation is not None:
            yield Hit(
                "require-concurrent-reindex",
                statement,
                _ref(node.relation),
                "REINDEX without CONCURRENTLY blocks writes (and reads through the index) "
                "until it ends.",
                lock="ShareLock",
            )
    elif isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        yield from alter_table(statement, node, state, catalog)


def _is_zero(args: Any) -> bool:
    value = getattr(getattr((args or [None])[0], "val", None), "ival", None)
    text = getattr(getattr((args or [None])[0], "val", None), "sval", None)
    return value == 0 or (isinstance(text, str) and text.strip() in ("0", "0s", "0ms"))


def _index(statement: Statement, node: ast.IndexStmt, state: _State) -> Iterator[Hit]:
    table = _ref(node.relation)
    if node.concurrent:
        if statement.in_transaction:
            yield _in_transaction(statement, "CREATE INDEX CONCURRENTLY")
        return
    if state.is_new(table):
        yield Hit(
            "require-concurrent-index-creation",
            statement,
            table,
            f"{_name(table)} is created earlier in this migration: building the index "
            "without CONCURRENTLY costs nothing.",
            severity="info",
            cleared=True,
        )
        return
    yield Hit(
        "require-concurrent-index-creation",
        statement,
        table,
        f"CREATE INDEX without CONCURRENTLY holds a SHARE lock on {_name(table)}: every "
        "insert, update and delete waits until the whole index is built.",
        lock="ShareLock",
    )


def _drop(
    statement: Statement, node: ast.DropStmt, state: _State, catalog: Catalog | None
) -> Iterator[Hit]:
    for parts in node.objects or ():
        names = [p.sval for p in parts] if isinstance(parts, tuple | list) else []
        if not names:
            continue
        ref: TableRef = (names[-2] if len(names) > 1 else None, names[-1])
        if node.removeType == ObjectType.OBJECT_INDEX:
            if node.concurrent:
                if statement.in_transaction:
                    yield _in_transaction(statement, "DROP INDEX CONCURRENTLY")
                continue
            if ref[1] in state.created_indexes:
                continue
            table = catalog.index_table(ref) if catalog is not None else None
            if state.is_new(table):
                continue
            yield Hit(
                "require-concurrent-index-deletion",
                statement,
                table,
                f"DROP INDEX {_name(ref)} without CONCURRENTLY takes ACCESS EXCLUSIVE on "
                f"{'its table' if table is None else _name(table)}: it waits behind every "
                "running query on it, and every new query waits behind it.",
                lock="AccessExclusiveLock",
            )
        elif node.removeType == ObjectType.OBJECT_TABLE:
            new = state.is_new(ref)
            yield Hit(
                "ban-drop-table",
                statement,
                ref,
                f"DROP TABLE {_name(ref)} breaks every running instance of the application "
                "that still reads or writes it, and its rows are gone.",
                lock="AccessExclusiveLock",
                **_cleared_new(new, ref),
            )


def _rename(statement: Statement, node: ast.RenameStmt, state: _State) -> Iterator[Hit]:
    if node.relation is None:
        return
    table = _ref(node.relation)
    new = state.is_new(table)
    if node.renameType == ObjectType.OBJECT_COLUMN:
        yield Hit(
            "renaming-column",
            statement,
            table,
            f"renaming {column_name(table, str(node.subname))} to "
            f"{quote_identifier(str(node.newname), plain=True)} breaks running code "
            "that still uses the old name, until every instance is redeployed.",
            lock="AccessExclusiveLock",
            **_cleared_new(new, table),
        )
    elif node.renameType == ObjectType.OBJECT_TABLE:
        yield Hit(
            "renaming-table",
            statement,
            table,
            f"renaming {_name(table)} to {quote_identifier(str(node.newname), plain=True)} "
            "breaks running code that still uses the old name, until every instance is "
            "redeployed.",
            lock="AccessExclusiveLock",
            **_cleared_new(new, table),
        )
        if new:
            state.created.add((table[0], str(node.newname)))


def _remember(node: Any, state: _State) -> None:
    """Record what a statement made: tables, indexes, column types, validated CHECKs."""
    if isinstance(node, ast.CreateStmt | ast.CreateTableAsStmt):
        into: Any = getattr(node, "into", None)
        relation = node.relation if isinstance(node, ast.CreateStmt) else into.rel
        table = _ref(relation)
        state.created.add(table)
        for element in getattr(node, "tableElts", None) or ():
            if isinstance(element, ast.ColumnDef) and element.typeName is not None:
                kind = type_of(element.typeName)
                if kind is not None:
                    state.columns[(table, str(element.colname))] = kind
    elif isinstance(node, ast.IndexStmt) and node.idxname:
        state.created_indexes.add(node.idxname)
