"""The locks a statement takes, and the rules about them: lock_timeout, several locks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType as At
from pglast.enums import ConstrType, ObjectType

from pgwarden.schema.lint._model import (
    Hit,
    TableRef,
    _name,
    _ref,
    _same,
    _State,
    _statement_kind,
)
from pgwarden.schema.lint._script import Statement

__all__ = ["CONFLICTS", "lock_hits"]

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


def lock_hits(statement: Statement, state: _State, hits: list[Hit]) -> Iterator[Hit]:
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


# Which held modes each mode waits for (PostgreSQL's table of conflicting lock modes),
# by position in _LOCK_MODES.
_WAITS_FOR = [{7}, {6, 7}, {4, 5, 6, 7}, {3, 4, 5, 6, 7}, {2, 3, 5, 6, 7}, {2, 3, 4, 5, 6, 7},
              {1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}]  # fmt: skip
CONFLICTS: dict[str, frozenset[str]] = {
    mode: frozenset(_LOCK_MODES[i] for i in held)
    for mode, held in zip(_LOCK_MODES, _WAITS_FOR, strict=True)
}


def _strength(mode: str) -> int:
    return _LOCK_MODES.index(mode)


def _mode(mode: str) -> str:
    words = mode.removesuffix("Lock")
    return "".join(f" {c}" if c.isupper() else c for c in words).strip().upper()


def _constraints(node: ast.CreateStmt) -> Iterator[Any]:
    for element in node.tableElts or ():
        if isinstance(element, ast.Constraint):
            yield element
        elif isinstance(element, ast.ColumnDef):
            yield from element.constraints or ()
