"""What an anonymizing erase writes in place of a row's personal values.

Text becomes a deterministic fake derived from the row's key, the column and a salt
(never from the value); values identifying as a whole with no sensible fake (binary,
network, JSON, UUID, XML, arrays) become NULL, or their default when NOT NULL.

Two kinds of column are read from the catalog first, because a fake could break them:

* a text column that a CHECK constraint (of the table, or of its domain) limits to a
  fixed list of values, ``CHECK (state IN ('draft', 'published'))``, holds a label
  like an enum's, not a person's data, and is kept as enum values are;
* any other CHECK is left to the server: when it refuses a fake, the erase stops with
  an error naming the constraint and its columns, and nothing is changed.

A caller decides per column with ``keep`` (leave the values) and ``clear`` (set NULL).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogTable

__all__ = [
    "CheckConstraint",
    "KeptColumn",
    "anonymized_values",
    "check_constraints",
    "refused",
]

# Types whose values are identifying as a whole and have no sensible fake.
_CLEARED = {"bytea", "inet", "cidr", "macaddr", "macaddr8", "json", "jsonb", "uuid", "xml"}

# The CHECK constraints on each column of a table: its own, and those of its domain
# and of every domain that domain is built on.
_CHECKS = """
WITH RECURSIVE typed AS (
  SELECT a.attname, a.atttypid AS typid
  FROM pg_attribute AS a
  WHERE a.attrelid = CAST(:rel AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT typed.attname, t.typbasetype
  FROM typed
  JOIN pg_type AS t ON t.oid = typed.typid
  WHERE t.typtype = 'd'
)
SELECT
  a.attname AS column_name,
  c.conname AS name,
  pg_get_constraintdef(c.oid) AS definition,
  false AS domain
FROM pg_constraint AS c
JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
WHERE c.conrelid = CAST(:rel AS regclass)
  AND c.contype = 'c'
UNION ALL
SELECT typed.attname, c.conname, pg_get_constraintdef(c.oid), true
FROM typed
JOIN pg_constraint AS c ON c.contypid = typed.typid AND c.contype = 'c'
"""


@dataclass(frozen=True, slots=True)
class CheckConstraint:
    """A CHECK constraint on one column (of its table or of its domain)."""

    column: str
    name: str
    definition: str
    domain: bool = False

    @property
    def fixed_list(self) -> bool:
        """Say whether the constraint limits this column to a list of constants."""
        return _is_fixed_list(self.definition, "value" if self.domain else self.column)


@dataclass(frozen=True, slots=True)
class KeptColumn:
    """A column an anonymizing erase left as it was, and why."""

    table: str
    column: str
    reason: str


def check_constraints(conn: Connection, target: CatalogTable) -> list[CheckConstraint]:
    """Return the CHECK constraints on the columns of ``target``."""
    rows = conn.execute(text(_CHECKS), {"rel": target.sql}).all()
    return [CheckConstraint(r.column_name, r.name, r.definition, r.domain) for r in rows]


def anonymized_values(
    target: CatalogTable,
    checks: list[CheckConstraint],
    params: dict[str, Any],
    *,
    keep: Collection[str] = (),
    clear: Collection[str] = (),
) -> tuple[list[str], list[KeptColumn]]:
    """Return the ``SET`` items that anonymize ``target``'s rows, and the columns kept.

    The fakes read ``:salt``, ``:table`` and ``pgw_p.pgw_key`` (the row's key), and
    ``params`` gains the column names they bind.
    """
    keys = set(target.primary_key) | {c for fk in target.foreign_keys for c in fk.columns}
    by_column: dict[str, list[CheckConstraint]] = {}
    for check in checks:
        by_column.setdefault(check.column, []).append(check)
    sets: list[str] = []
    kept: list[KeptColumn] = []
    for name in sorted((set(keep) | set(clear)) & keys):
        raise UserError(
            f"{target.qualified}.{name} is a key: an anonymizing erase never changes keys,"
            " so --keep and --clear do not apply to it; nothing was changed."
        )
    for i, column in enumerate(target.by_name.values()):
        if column.name in keys or column.generated or column.identity:
            continue
        name = quote(column.name)
        if column.name in keep:
            kept.append(KeptColumn(target.qualified, column.name, "kept as asked"))
        elif column.name in clear:
            if not column.nullable:
                raise UserError(
                    f"{target.qualified}.{column.name} is NOT NULL, so it cannot be cleared;"
                    " nothing was changed.",
                    hint="Keep the column instead, or let the erase write its fake.",
                )
            sets.append(f"{name} = NULL")
        elif column.category == "S":
            limits = by_column.get(column.name, [])
            if limits and all(check.fixed_list for check in limits):
                names = ", ".join(sorted(check.name for check in limits))
                kept.append(
                    KeptColumn(
                        target.qualified,
                        column.name,
                        f"{names} limits it to a fixed list of values, like an enum",
                    )
                )
                continue
            params[f"a{i}"] = column.name
            fake = (
                "'anon-' || substr(md5(CAST(:salt AS text) || '/' || :table || '/' ||"
                f" CAST(:a{i} AS text) || '/' || pgw_p.pgw_key::text), 1, 16)"
            )
            if "email" in column.name.lower():
                fake += " || '@example.invalid'"
            if column.max_length:
                fake = f"left({fake}, {int(column.max_length)})"
            sets.append(
                f"{name} = CASE WHEN pgw_t.{name} IS NULL OR pgw_t.{name} = ''"
                f" THEN pgw_t.{name} ELSE {fake} END"
            )
        elif column.base_type in _CLEARED or column.category == "A":
            if column.nullable:
                sets.append(f"{name} = NULL")
            elif column.has_default:
                sets.append(f"{name} = DEFAULT")
    return sets, kept


def refused(
    target: CatalogTable, checks: list[CheckConstraint], constraint: str | None, reason: str
) -> UserError:
    """Return the error for fakes that ``constraint`` of ``target`` refused."""
    columns = sorted({c.column for c in checks if c.name == constraint})
    where = ", ".join(f"{target.qualified}.{c}" for c in columns) or target.qualified
    spec = f"{target.qualified}.{columns[0]}" if columns else "TABLE.COLUMN"
    named = f"constraint {constraint!r}" if constraint else "a constraint"
    return UserError(
        f"The anonymized values for {where} break {named} ({reason}); nothing was changed.",
        hint=f"Choose what to do with that column: --clear {spec} sets it to NULL,"
        f" --keep {spec} leaves its values as they are.",
    )


# A fixed-list check compares the column itself (or a domain's VALUE) with constants
# only: col IN (...), col = ANY (ARRAY[...]), col = 'x', and ORs of those. A check that
# names another column (kind = 'guest' OR name = 'Guest') says nothing of this one's.


def _is_fixed_list(definition: str, column: str) -> bool:
    body = definition.strip()
    if not body.upper().startswith("CHECK"):
        return False
    body = body[len("CHECK") :].strip()
    if body.upper().endswith("NOT VALID"):
        body = body[: -len("NOT VALID")].strip()
    try:
        statement = pglast.parse_sql(f"SELECT {body}")[0].stmt
    except pglast.parser.ParseError:
        return False
    if not isinstance(statement, ast.SelectStmt) or not statement.targetList:
        return False
    return _fixed(statement.targetList[0].val, column)


def _fixed(node: Any, column: str) -> bool:
    if isinstance(node, ast.BoolExpr):
        return node.boolop == BoolExprType.OR_EXPR and all(
            _fixed(arg, column) for arg in node.args or ()
        )
    if not isinstance(node, ast.A_Expr):
        return False
    operator = [getattr(part, "sval", None) for part in node.name or ()]
    if operator != ["="] or node.kind not in (
        A_Expr_Kind.AEXPR_OP,
        A_Expr_Kind.AEXPR_OP_ANY,
        A_Expr_Kind.AEXPR_IN,
    ):
        return False
    return _names(node.lexpr, column) and _constant(node.rexpr)


def _names(node: Any, column: str) -> bool:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef) or not node.fields:
        return False
    last = node.fields[-1]
    return isinstance(last, ast.String) and last.sval == column


def _constant(node: Any) -> bool:
    if isinstance(node, (tuple, list)):
        return all(_constant(item) for item in node)
    if isinstance(node, ast.TypeCast):
        return _constant(node.arg)
    if isinstance(node, ast.A_ArrayExpr):
        return _constant(node.elements or ())
    return isinstance(node, ast.A_Const)
