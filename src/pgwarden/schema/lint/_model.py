"""What the linter's own rules share: a table's name, a hit, the walk's state, the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pglast import ast
from pglast.enums import NullTestType
from pglast.visitors import Visitor

from pgwarden._sql import quote_identifier
from pgwarden.schema.lint._script import Statement
from pgwarden.schema.lint._types import ColumnType, rewrites
from pgwarden.schema.lint.findings import Severity

__all__ = [
    "SERIAL_TYPES",
    "Catalog",
    "Hit",
    "TableRef",
    "column_name",
    "functions_in",
    "not_null_column",
    "rewrite_of",
    "volatile_call",
]

TableRef = tuple[str | None, str]  # (schema or None, name) as written


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


def _in_transaction(statement: Statement, what: str) -> Hit:
    return Hit(
        "ban-concurrent-index-creation-in-transaction",
        statement,
        None,
        f"{what} cannot run inside a transaction block: the migration fails with "
        '"cannot run inside a transaction block".',
    )


def _statement_kind(statement: Statement, words: int = 2) -> str:
    return " ".join(statement.text.split()[:words])


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


SERIAL_TYPES = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


# ALTER TABLE subcommands that take a weaker lock than ACCESS EXCLUSIVE.


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
