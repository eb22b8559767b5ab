"""pgwarden's own rules, read from pglast's parse tree of each statement in order.

The walk keeps what the migration did so far (tables it created, CHECKs it validated,
whether lock_timeout is set, the ACCESS EXCLUSIVE locks its transaction holds), so a
statement is judged in its place: an index on a table created three lines up costs
nothing. What only the database knows (a column's type, a function's volatility, a
CHECK validated by an earlier migration) is asked of a :class:`Catalog` when one is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pglast import ast
from pglast.enums import AlterTableType as At
from pglast.enums import (
    ConstrType,
    NullTestType,
    ObjectType,
    TransactionStmtKind,
    VariableSetKind,
)
from pglast.visitors import Visitor

from pgwarden._sql import quote_identifier
from pgwarden.schema.lint._script import Script, Statement
from pgwarden.schema.lint._types import ColumnType, rewrites, type_of
from pgwarden.schema.lint.findings import Severity

__all__ = ["Catalog", "Hit", "TableRef", "check_script", "column_name"]

TableRef = tuple[str | None, str]  # (schema or None, name) as written

_VOLATILE = {
    "random",
    "random_normal",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "gen_random_bytes",
    "txid_current",
    "pg_current_xact_id",
    "setval",
}
_ENDS = {
    TransactionStmtKind.TRANS_STMT_COMMIT,
    TransactionStmtKind.TRANS_STMT_ROLLBACK,
    TransactionStmtKind.TRANS_STMT_PREPARE,
}
_SERIAL = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}
# ALTER TABLE subcommands that take a weaker lock than ACCESS EXCLUSIVE.
_WEAKER = {
    At.AT_ValidateConstraint: "ShareUpdateExclusiveLock",
    At.AT_SetStatistics: "ShareUpdateExclusiveLock",
    At.AT_SetOptions: "ShareUpdateExclusiveLock",
    At.AT_ResetOptions: "ShareUpdateExclusiveLock",
    At.AT_SetRelOptions: "ShareUpdateExclusiveLock",
    At.AT_ResetRelOptions: "ShareUpdateExclusiveLock",
    At.AT_ClusterOn: "ShareUpdateExclusiveLock",
    At.AT_DropCluster: "ShareUpdateExclusiveLock",
    At.AT_AttachPartition: "ShareUpdateExclusiveLock",
    At.AT_EnableTrig: "ShareRowExclusiveLock",
    At.AT_DisableTrig: "ShareRowExclusiveLock",
}


class Catalog(Protocol):
    """What the live database can tell the checks."""

    def column_type(self, table: TableRef, column: str) -> ColumnType | None: ...
    def volatile(self, function: str) -> bool | None: ...
    def validated_not_null(self, table: TableRef, column: str) -> bool: ...
    def index_table(self, index: TableRef) -> TableRef | None: ...
    def timezone_is_utc(self) -> bool | None: ...


@dataclass(frozen=True)
class Hit:
    """What a rule found in one statement; ``cleared`` when it found the statement safe."""

    rule: str
    statement: Statement
    table: TableRef | None
    message: str
    lock: str | None = None  # the lock mode the statement takes on ``table``
    severity: Severity | None = None  # None: the rule's own
    notes: tuple[str, ...] = ()
    cleared: bool = False


@dataclass
class _State:
    created: set[TableRef] = field(default_factory=set)
    created_indexes: set[str] = field(default_factory=set)
    columns: dict[tuple[TableRef, str], ColumnType] = field(default_factory=dict)
    not_null_checks: dict[str, tuple[TableRef, str, int]] = field(default_factory=dict)
    validated: set[tuple[TableRef, str]] = field(default_factory=set)
    lock_timeout: bool = False
    lock_timeout_local: bool = False
    lock_timeout_reported: bool = False
    transaction: int = 0
    # table -> the statement that took ACCESS EXCLUSIVE on it, in this transaction
    exclusive: dict[TableRef, str] = field(default_factory=dict)
    # statement start -> the locks it takes on tables that exist before the migration
    locks: dict[int, list[tuple[TableRef, str]]] = field(default_factory=dict)

    def is_new(self, table: TableRef | None) -> bool:
        return table is not None and any(_same(table, made) for made in self.created)


def _same(a: TableRef, b: TableRef) -> bool:
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


def _ref(range_var: Any) -> TableRef:
    return (range_var.schemaname, range_var.relname)


def _name(table: TableRef | None) -> str:
    """Return a table's name as SQL writes it, for messages."""
    if table is None:
        return "?"
    name = quote_identifier(table[1], plain=True)
    return name if table[0] is None else f"{quote_identifier(table[0], plain=True)}.{name}"


def column_name(table: TableRef, column: str) -> str:
    """Return ``table.column`` as SQL writes it, for messages."""
    return f"{_name(table)}.{quote_identifier(column, plain=True)}"


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
        yield from _locks(statement, state, hits)
        if isinstance(statement.node, ast.TransactionStmt) and statement.node.kind in _ENDS:
            open_ = False
            if state.lock_timeout_local:
                state.lock_timeout = state.lock_timeout_local = False


def _locks(statement: Statement, state: _State, hits: list[Hit]) -> Iterator[Hit]:
    """Yield the lock_timeout and several-locks findings of a statement's locks."""
    strongest: dict[TableRef, str] = {}
    for table, mode in [(h.table, h.lock) for h in hits] + _plain_locks(statement.node):
        if table is None or mode is None or state.is_new(table) or _strength(mode) < 4:
            continue
        if table not in strongest or _strength(mode) > _strength(strongest[table]):
            strongest[table] = mode
    for table, mode in strongest.items():
        state.locks.setdefault(statement.start, []).append((table, mode))
        if not state.lock_timeout and not state.lock_timeout_reported:
            state.lock_timeout_reported = True
            yield Hit(
                "require-lock-timeout",
                statement,
                table,
                f"{_statement_kind(statement)} takes {_mode(mode)} on {_name(table)} with no "
                "lock_timeout set: if a transaction holds a conflicting lock, this waits for "
                "it, and every query on the table queues behind this one.",
                lock=mode,
            )
        if mode == "AccessExclusiveLock" and statement.in_transaction:
            earlier = [t for t in state.exclusive if not _same(t, table)]
            if earlier and not any(_same(t, table) for t in state.exclusive):
                first = earlier[0]
                yield Hit(
                    "several-access-exclusive-locks",
                    statement,
                    table,
                    f"this transaction already holds ACCESS EXCLUSIVE on {_name(first)} "
                    f"({state.exclusive[first]}) and now takes it on {_name(table)}: "
                    "reads and writes of both wait until it commits, and an application "
                    "locking them in the other order deadlocks.",
                    lock=mode,
                )
            state.exclusive.setdefault(table, _statement_kind(statement, 6))


def _plain_locks(node: Any) -> list[tuple[TableRef | None, str]]:
    """Return the locks of statements no rule flags by themselves (a trigger, a lock)."""
    if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        found: list[tuple[TableRef | None, str]] = []
        for cmd in node.cmds or ():
            mode = _WEAKER.get(cmd.subtype, "AccessExclusiveLock")
            fk = getattr(cmd.def_, "contype", None) == ConstrType.CONSTR_FOREIGN
            if fk:
                mode = "ShareRowExclusiveLock"
                found.append((_ref(cmd.def_.pktable), mode))
            found.append((_ref(node.relation), mode))
        return found
    if isinstance(node, ast.CreateTrigStmt):
        return [(_ref(node.relation), "ShareRowExclusiveLock")]
    if isinstance(node, ast.LockStmt):
        level = int(node.mode or 8)
        mode = _LOCK_MODES[level - 1] if 0 < level <= len(_LOCK_MODES) else "AccessExclusiveLock"
        return [(_ref(rel), mode) for rel in node.relations or ()]
    if isinstance(node, ast.TruncateStmt):
        return [(_ref(rel), "AccessExclusiveLock") for rel in node.relations or ()]
    if isinstance(node, ast.CreateStmt):
        return [
            (_ref(c.pktable), "ShareRowExclusiveLock")
            for c in _constraints(node)
            if c.contype == ConstrType.CONSTR_FOREIGN
        ]
    return []


_LOCK_MODES = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]


def _strength(mode: str) -> int:
    return _LOCK_MODES.index(mode)


def _mode(mode: str) -> str:
    words = mode.removesuffix("Lock")
    return "".join(f" {c}" if c.isupper() else c for c in words).strip().upper()


def _statement_kind(statement: Statement, words: int = 2) -> str:
    return " ".join(statement.text.split()[:words])


def _constraints(node: ast.CreateStmt) -> Iterator[Any]:
    for element in node.tableElts or ():
        if isinstance(element, ast.Constraint):
            yield element
        elif isinstance(element, ast.ColumnDef):
            yield from element.constraints or ()


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
        from pgwarden.schema.lint._alter import alter_table

        yield from alter_table(statement, node, state, catalog)


def _is_zero(args: Any) -> bool:
    value = getattr(getattr((args or [None])[0], "val", None), "ival", None)
    text = getattr(getattr((args or [None])[0], "val", None), "sval", None)
    return value == 0 or (isinstance(text, str) and text.strip() in ("0", "0s", "0ms"))


def _in_transaction(statement: Statement, what: str) -> Hit:
    return Hit(
        "ban-concurrent-index-creation-in-transaction",
        statement,
        None,
        f"{what} cannot run inside a transaction block: the migration fails with "
        '"cannot run inside a transaction block".',
    )


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


def _cleared_new(new: bool, table: TableRef) -> dict[str, Any]:
    if not new:
        return {}
    return {
        "severity": "info",
        "cleared": True,
        "notes": (
            f"{_name(table)} is created earlier in this migration: no running code uses it yet.",
        ),
    }


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


def not_null_column(expr: Any) -> str | None:
    """Return the column of a ``CHECK (c IS NOT NULL)``, else None."""
    if isinstance(expr, ast.NullTest) and expr.nulltesttype == NullTestType.IS_NOT_NULL:
        fields = getattr(expr.arg, "fields", None) or ()
        if fields and isinstance(fields[-1], ast.String):
            return str(fields[-1].sval)
    return None


def functions_in(expr: Any) -> list[str]:
    """Return the names of the functions an expression calls."""
    found: list[str] = []

    class _Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:
            found.append(str(node.funcname[-1].sval).lower())

    _Calls()(expr)
    return found


def volatile_call(expr: Any, catalog: Catalog | None) -> str | None:
    """Return a volatile function the expression calls, if any is known to be."""
    for name in functions_in(expr):
        verdict = catalog.volatile(name) if catalog is not None else None
        if verdict or (verdict is None and name in _VOLATILE):
            return name
    return None


def rewrite_of(old: ColumnType, new: ColumnType, catalog: Catalog | None) -> tuple[bool, str]:
    """Return whether a type change rewrites, asking the catalog about the time zone."""
    utc = catalog.timezone_is_utc() if catalog is not None else None
    return rewrites(old, new, utc=utc)


__all__ += ["functions_in", "not_null_column", "rewrite_of", "volatile_call"]
_SERIAL_TYPES = _SERIAL
