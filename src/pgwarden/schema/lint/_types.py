"""Which column type changes rewrite the table, and which PostgreSQL does in place.

PostgreSQL skips the rewrite when the new type is binary-coercible from the old
(``varchar`` -> ``text``, ``cidr`` -> ``inet``) or when only a length or precision grows
on a type whose length coercion it knows to be a no-op (``varchar``, ``varbit``,
``numeric`` with the same scale, ``timestamp``, ``time``, ``interval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ColumnType", "rewrites", "type_of"]

_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "decimal": "numeric",
    "boolean": "bool",
    "double precision": "float8",
    "real": "float4",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "bit varying": "varbit",
}
# Limits a longer one of which PostgreSQL applies without touching a row.
_GROWS_IN_PLACE = {"varchar", "varbit", "timestamp", "timestamptz", "time", "timetz", "interval"}
# (old, new) casts that are binary-coercible: the bytes stay as they are.
_BINARY = {("varchar", "text"), ("text", "varchar"), ("cidr", "inet"), ("xml", "text")}


@dataclass(frozen=True)
class ColumnType:
    """A column type: its canonical name, its modifiers, whether it is an array."""

    name: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    def __str__(self) -> str:
        mods = f"({', '.join(map(str, self.modifiers))})" if self.modifiers else ""
        return f"{self.name}{mods}{'[]' if self.array else ''}"


def canonical(name: str) -> str:
    """Return the catalog's name of a type (``integer`` -> ``int4``)."""
    name = name.lower()
    return _ALIASES.get(name, name)


def type_of(type_name: Any) -> ColumnType | None:
    """Return the type of a pglast ``TypeName``, or None for one without plain modifiers."""
    names = [n.sval for n in type_name.names]
    modifiers = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, "val", None), "ival", None)
        if not isinstance(value, int):
            return None
        modifiers.append(value)
    return ColumnType(canonical(names[-1]), tuple(modifiers), bool(type_name.arrayBounds))


def rewrites(old: ColumnType, new: ColumnType, *, utc: bool | None = None) -> tuple[bool, str]:
    """Return whether changing ``old`` to ``new`` rewrites the table, and why.

    ``utc`` says whether the session's TimeZone is UTC (``timestamp`` -> ``timestamptz``
    skips the rewrite then, from PostgreSQL 12); None when unknown.
    """
    if old == new:
        return False, f"{new} is the type the column already has"
    if old.array != new.array:
        return True, f"{old} -> {new} changes every value"
    if old.name == new.name:
        return _same_type(old, new)
    if (old.name, new.name) in _BINARY and not new.modifiers:
        return False, f"{old} -> {new} is binary-coercible: no row is rewritten"
    if (old.name, new.name) == ("timestamp", "timestamptz"):
        if utc:
            return (
                False,
                "timestamp -> timestamptz rewrites nothing when the session's TimeZone is UTC",
            )
        return (
            True,
            "timestamp -> timestamptz rewrites the table unless the session's TimeZone is UTC",
        )
    return True, f"{old} -> {new} converts every row"


def _same_type(old: ColumnType, new: ColumnType) -> tuple[bool, str]:
    if old.name == "numeric":
        if not new.modifiers:
            return False, f"{old} -> {new} removes the limit: no row is rewritten"
        if old.modifiers:
            (p_old, s_old), (p_new, s_new) = ((*m, 0)[:2] for m in (old.modifiers, new.modifiers))
            if p_new >= p_old and s_new == s_old:
                return False, f"{old} -> {new} only raises the precision: no row is rewritten"
        return (
            True,
            f"{old} -> {new} changes the scale or lowers the precision: every row is "
            "checked and rewritten",
        )
    if old.name in _GROWS_IN_PLACE:
        if not new.modifiers:
            return False, f"{old} -> {new} removes the limit: no row is rewritten"
        if old.modifiers and new.modifiers[0] >= old.modifiers[0]:
            return False, f"{old} -> {new} only raises the limit: no row is rewritten"
        return True, f"{old} -> {new} lowers or adds a limit: every row is checked and rewritten"
    return True, f"{old} -> {new} rewrites every row"
