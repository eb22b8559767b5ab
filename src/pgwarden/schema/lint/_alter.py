"""pgwarden's rules for the subcommands of ALTER TABLE."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType as At
from pglast.enums import ConstrType

from pgwarden.schema.lint._model import (
    SERIAL_TYPES,
    Catalog,
    Hit,
    TableRef,
    _cleared_new,
    _in_transaction,
    _name,
    _ref,
    _State,
    column_name,
    not_null_column,
    rewrite_of,
    volatile_call,
)
from pgwarden.schema.lint._script import Statement
from pgwarden.schema.lint._types import type_of

__all__ = ["alter_table"]

_EXCLUSIVE = "AccessExclusiveLock"
# The rule that flags each kind of constraint added in one step to a table with rows.
_CONSTRAINT_RULES = {
    ConstrType.CONSTR_CHECK: "constraint-missing-not-valid",
    ConstrType.CONSTR_FOREIGN: "adding-foreign-key-constraint",
    ConstrType.CONSTR_UNIQUE: "disallowed-unique-constraint",
    ConstrType.CONSTR_EXCLUSION: "disallowed-unique-constraint",
    ConstrType.CONSTR_PRIMARY: "adding-serial-primary-key-field",
}


def alter_table(
    statement: Statement, node: ast.AlterTableStmt, state: _State, catalog: Catalog | None
) -> Iterator[Hit]:
    """Yield what the rules find in each subcommand of one ALTER TABLE."""
    table = _ref(node.relation)
    new = state.is_new(table)
    for cmd in node.cmds or ():
        if cmd.subtype == At.AT_AddColumn:
            yield from _add_column(statement, table, cmd.def_, new, catalog)
        elif cmd.subtype == At.AT_AddConstraint:
            yield from _add_constraint(statement, table, cmd.def_, new, state)
        elif cmd.subtype == At.AT_ValidateConstraint:
            added = state.not_null_checks.get(cmd.name)
            if added is not None and statement.in_transaction and added[2] == state.transaction:
                yield Hit(
                    "constraint-missing-not-valid",
                    statement,
                    table,
                    f"VALIDATE CONSTRAINT {cmd.name} runs in the transaction that added it "
                    "NOT VALID: that transaction still holds the ADD's lock, so the "
                    "validating scan blocks writes (or all queries) all the same.",
                    lock=_EXCLUSIVE,
                )
            if added is not None and added[1]:
                state.validated.add((added[0], added[1]))
        elif cmd.subtype == At.AT_SetNotNull:
            yield from _set_not_null(statement, table, cmd.name, new, state, catalog)
        elif cmd.subtype == At.AT_AlterColumnType:
            yield from _alter_type(statement, table, cmd, new, state, catalog)
        elif cmd.subtype == At.AT_DropColumn:
            yield Hit(
                "ban-drop-column",
                statement,
                table,
                f"dropping {column_name(table, str(cmd.name))} breaks every running instance "
                "of the application that still selects or inserts it (SQLAlchemy names every "
                "mapped column in its statements).",
                lock=_EXCLUSIVE,
                **_cleared_new(new, table),
            )
        elif cmd.subtype == At.AT_DetachPartition:
            if cmd.def_.concurrent:
                if statement.in_transaction:
                    yield _in_transaction(statement, "DETACH PARTITION CONCURRENTLY")
            elif not new:
                yield Hit(
                    "require-concurrent-partition-detach",
                    statement,
                    table,
                    f"DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on "
                    f"{_name(table)}: it waits behind every query on it.",
                    lock=_EXCLUSIVE,
                )


def _add_column(
    statement: Statement, table: TableRef, column: ast.ColumnDef, new: bool, catalog: Catalog | None
) -> Iterator[Hit]:
    where = column_name(table, str(column.colname))
    kinds = {c.contype: c for c in column.constraints or ()}
    type_names: Any = column.typeName.names if column.typeName else ()
    type_name = str(type_names[-1].sval).lower() if type_names else ""
    if new:
        return
    if type_name in SERIAL_TYPES or ConstrType.CONSTR_IDENTITY in kinds:
        yield Hit(
            "adding-serial-or-identity",
            statement,
            table,
            f"adding {where} as {type_name if type_name in SERIAL_TYPES else 'an identity'} "
            f"column rewrites {_name(table)} to number every row, under ACCESS EXCLUSIVE: "
            "no query on it runs until the rewrite ends.",
            lock=_EXCLUSIVE,
        )
    default = kinds.get(ConstrType.CONSTR_DEFAULT)
    generated = kinds.get(ConstrType.CONSTR_GENERATED)
    if generated is not None:
        yield Hit(
            "adding-field-with-default",
            statement,
            table,
            f"adding the stored generated column {where} rewrites {_name(table)} under "
            "ACCESS EXCLUSIVE to compute it for every row.",
            lock=_EXCLUSIVE,
        )
    elif default is not None:
        function = volatile_call(default.raw_expr, catalog)
        if function is not None:
            yield Hit(
                "adding-field-with-default",
                statement,
                table,
                f"the default of {where} calls {function}(), which is volatile: "
                f"PostgreSQL rewrites {_name(table)} under ACCESS EXCLUSIVE to store a "
                "value in every row (a constant or stable default would not).",
                lock=_EXCLUSIVE,
            )
        else:
            yield Hit(
                "adding-field-with-default",
                statement,
                table,
                f"the default of {where} is not volatile: PostgreSQL 11 and later add "
                "the column without a rewrite.",
                severity="info",
                cleared=True,
            )
    if (
        ConstrType.CONSTR_NOTNULL in kinds
        and default is None
        and generated is None
        and ConstrType.CONSTR_IDENTITY not in kinds
        and type_name not in SERIAL_TYPES
    ):
        yield Hit(
            "adding-required-field",
            statement,
            table,
            f"adding {where} NOT NULL without a DEFAULT fails on a table that has rows "
            '("column contains null values").',
            lock=_EXCLUSIVE,
        )
    for constraint in column.constraints or ():
        yield from _add_constraint(statement, table, constraint, new, None, column=column.colname)


def _add_constraint(
    statement: Statement,
    table: TableRef,
    constraint: ast.Constraint,
    new: bool,
    state: _State | None,
    *,
    column: str | None = None,
) -> Iterator[Hit]:
    kind = constraint.contype
    label = constraint.conname or (f"on {column}" if column else "")
    not_valid = bool(constraint.skip_validation)
    if new and not not_valid and kind in _CONSTRAINT_RULES:
        yield _new_table(_CONSTRAINT_RULES[kind], statement, table)
    if kind == ConstrType.CONSTR_CHECK:
        checked = not_null_column(constraint.raw_expr)
        if state is not None and constraint.conname:
            state.not_null_checks[constraint.conname] = (table, checked or "", state.transaction)
            if checked and not not_valid:
                state.validated.add((table, checked))
        if not (new or not_valid):
            yield Hit(
                "constraint-missing-not-valid",
                statement,
                table,
                f"adding CHECK {label} without NOT VALID scans all of {_name(table)} "
                "under ACCESS EXCLUSIVE: no query on it runs until the scan ends.",
                lock=_EXCLUSIVE,
            )
    elif kind == ConstrType.CONSTR_FOREIGN:
        if not (new or not_valid):
            referenced = _ref(constraint.pktable) if constraint.pktable is not None else None
            yield Hit(
                "adding-foreign-key-constraint",
                statement,
                table,
                f"adding FOREIGN KEY {label} without NOT VALID scans {_name(table)} under "
                f"SHARE ROW EXCLUSIVE, blocking writes to it and to {_name(referenced)} "
                "until every row is checked.",
                lock="ShareRowExclusiveLock",
            )
    elif (
        kind in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION) and not constraint.indexname
    ):
        if not new:
            yield Hit(
                "disallowed-unique-constraint",
                statement,
                table,
                f"adding {'UNIQUE' if kind == ConstrType.CONSTR_UNIQUE else 'EXCLUDE'} "
                f"{label} builds its index under ACCESS EXCLUSIVE on {_name(table)}: no "
                "query on it runs until the index is built.",
                lock=_EXCLUSIVE,
            )
    elif kind == ConstrType.CONSTR_PRIMARY and not constraint.indexname and not new:
        yield Hit(
            "adding-serial-primary-key-field",
            statement,
            table,
            f"adding PRIMARY KEY {label} builds its index under ACCESS EXCLUSIVE on "
            f"{_name(table)}: no query on it runs until the index is built.",
            lock=_EXCLUSIVE,
        )


def _new_table(rule: str, statement: Statement, table: TableRef) -> Hit:
    """Return the note that a statement on a table made by this migration costs nothing."""
    return Hit(
        rule,
        statement,
        table,
        f"{_name(table)} is created earlier in this migration: it holds no rows and no "
        "running code uses it, so this costs nothing.",
        severity="info",
        cleared=True,
        notes=("downgraded: a table new in this migration.",),
    )


def _set_not_null(
    statement: Statement,
    table: TableRef,
    column: str,
    new: bool,
    state: _State,
    catalog: Catalog | None,
) -> Iterator[Hit]:
    where = column_name(table, column)
    if new:
        yield _new_table("adding-not-nullable-field", statement, table)
        return
    proven = (table, column) in state.validated
    if not proven and catalog is not None and catalog.validated_not_null(table, column):
        yield Hit(
            "adding-not-nullable-field",
            statement,
            table,
            f"{where} already has a validated CHECK ({column} IS NOT NULL) in the database: "
            "SET NOT NULL skips the scan.",
            severity="info",
            cleared=True,
        )
        return
    if proven:
        yield Hit(
            "adding-not-nullable-field",
            statement,
            table,
            f"a validated CHECK ({column} IS NOT NULL) earlier in this migration proves "
            "it: SET NOT NULL skips the scan.",
            severity="info",
            cleared=True,
        )
        return
    yield Hit(
        "adding-not-nullable-field",
        statement,
        table,
        f"SET NOT NULL on {where} scans all of {_name(table)} under ACCESS EXCLUSIVE: no "
        "query on it runs until the scan ends.",
        lock=_EXCLUSIVE,
    )


def _alter_type(
    statement: Statement,
    table: TableRef,
    cmd: Any,
    new: bool,
    state: _State,
    catalog: Catalog | None,
) -> Iterator[Hit]:
    where = column_name(table, str(cmd.name))
    if new:
        yield _new_table("changing-column-type", statement, table)
        return
    target = type_of(cmd.def_.typeName)
    old = state.columns.get((table, cmd.name))
    if old is None and catalog is not None:
        old = catalog.column_type(table, cmd.name)
    if cmd.def_.raw_default is not None:
        yield Hit(
            "changing-column-type",
            statement,
            table,
            f"changing the type of {where} with USING rewrites every row of "
            f"{_name(table)} under ACCESS EXCLUSIVE.",
            lock=_EXCLUSIVE,
        )
        return
    if old is None or target is None:
        yield Hit(
            "changing-column-type",
            statement,
            table,
            f"changing the type of {where} to {target or 'its new type'} rewrites "
            f"{_name(table)} under ACCESS EXCLUSIVE unless the change is binary-coercible "
            "(its current type is not known without a database).",
            lock=_EXCLUSIVE,
        )
        return
    rewrite, why = rewrite_of(old, target, catalog)
    if rewrite:
        yield Hit(
            "changing-column-type",
            statement,
            table,
            f"changing {where}: {why}, under ACCESS EXCLUSIVE: no query on "
            f"{_name(table)} runs until the rewrite ends.",
            lock=_EXCLUSIVE,
        )
    else:
        yield Hit(
            "changing-column-type",
            statement,
            table,
            f"changing {where}: {why}; it still takes ACCESS EXCLUSIVE for an instant.",
            lock=_EXCLUSIVE,
            severity="info",
            cleared=True,
        )
