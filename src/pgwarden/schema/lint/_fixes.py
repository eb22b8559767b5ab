"""The safe rewrite of a flagged statement, written with its own names.

Where a rule's fix can be written out for the statement at hand (the same index built
CONCURRENTLY, the constraint added NOT VALID then validated, the NOT NULL through a
validated CHECK), the finding carries that SQL; otherwise the rule's general advice.
"""

from __future__ import annotations

import re
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType as At
from pglast.enums import ConstrType

from pgwarden._sql import quote_identifier
from pgwarden.schema.lint._model import Hit, _name, _ref

__all__ = ["concrete_fix"]

_LATER = "-- then, in a later transaction:"
# Where CONCURRENTLY goes in each statement: after the words matched.
_CONCURRENTLY = {
    "require-concurrent-index-creation": re.compile(r"^(CREATE\s+(?:UNIQUE\s+)?INDEX)\s+", re.I),
    "require-concurrent-index-deletion": re.compile(r"^(DROP\s+INDEX)\s+", re.I),
    "require-concurrent-reindex": re.compile(r"^(REINDEX\s+(?:\([^)]*\)\s*)?\w+)\s+", re.I),
}
_OUTSIDE = "-- outside a transaction (Alembic: inside op.get_context().autocommit_block())"


def concrete_fix(hit: Hit) -> str | None:
    """Return the safe SQL for what ``hit`` flags, or None when only advice fits."""
    text = hit.statement.text
    node: Any = hit.statement.node
    if hit.rule == "require-lock-timeout":
        return f"SET lock_timeout = '2s';\n{text};"
    concurrently = _CONCURRENTLY.get(hit.rule)
    if concurrently is not None:
        fixed = concurrently.sub(r"\1 CONCURRENTLY ", text, count=1)
        return f"{_OUTSIDE}\n{fixed};"
    if not isinstance(node, ast.AlterTableStmt) or len(node.cmds or ()) != 1:
        return None
    table = _name(_ref(node.relation))
    relname = str(node.relation.relname) if node.relation is not None else "t"
    cmd: Any = (node.cmds or ())[0]
    if cmd.subtype == At.AT_SetNotNull and hit.rule == "adding-not-nullable-field":
        column = quote_identifier(str(cmd.name), plain=True)
        check = quote_identifier(f"{relname}_{cmd.name}_not_null"[:63], plain=True)
        return (
            f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;\n"
            f"{_LATER}\nALTER TABLE {table} VALIDATE CONSTRAINT {check};\n"
            f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;\n"
            f"ALTER TABLE {table} DROP CONSTRAINT {check};"
        )
    constraint = cmd.def_ if cmd.subtype == At.AT_AddConstraint else None
    if not isinstance(constraint, ast.Constraint):
        return None
    if hit.rule in ("constraint-missing-not-valid", "adding-foreign-key-constraint"):
        if not constraint.conname or "VALIDATE" in text.upper():
            return None
        name = quote_identifier(constraint.conname, plain=True)
        return f"{text} NOT VALID;\n{_LATER}\nALTER TABLE {table} VALIDATE CONSTRAINT {name};"
    keys = [quote_identifier(str(k.sval), plain=True) for k in constraint.keys or ()]
    if keys and hit.rule in ("disallowed-unique-constraint", "adding-serial-primary-key-field"):
        primary = constraint.contype == ConstrType.CONSTR_PRIMARY
        columns = "_".join(str(k.sval) for k in constraint.keys or ())
        default = f"{relname}_pkey" if primary else f"{relname}_{columns}_key"
        name = quote_identifier((constraint.conname or default)[:63], plain=True)
        kind = "PRIMARY KEY" if primary else "UNIQUE"
        return (
            f"{_OUTSIDE}\nCREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({', '.join(keys)});\n"
            f"ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name};"
        )
    return None
