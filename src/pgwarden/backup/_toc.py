"""Pick the entries of a dump's table of contents that restore chosen tables.

``pg_restore --table`` restores a table's definition and data only, without its
indexes, constraints, triggers, sequences or policies. A restore of chosen tables
instead filters ``pg_restore --list`` and hands the rest to ``--use-list``: for each
table, its definition and data, row security and policies, constraints, triggers,
rules, column defaults, indexes and owned sequences (the manifest names those, since
the list shows an index's name but not its table), privileges and comments. A foreign
key comes along when the table it references is restored too or exists in the
target; a partition is attached when its parent is restored too.

A list line reads ``3830; 0 52632 TABLE DATA public users postgres``: dump id, catalog
and object oids, the kind, the schema, the tag (``users``, or ``users pk_users`` for a
constraint of ``users``) and the owner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pgwarden.backup.manifest import TableEntry

__all__ = ["data_entries", "filter_list"]

_KINDS = (
    "TABLE DATA",
    "TABLE ATTACH",
    "INDEX ATTACH",
    "FK CONSTRAINT",
    "CHECK CONSTRAINT",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "ROW SECURITY",
    "CONSTRAINT",
    "TRIGGER",
    "POLICY",
    "RULE",
    "DEFAULT",
    "INDEX",
    "SEQUENCE",
    "TABLE",
    "ACL",
    "COMMENT",
)
_LINE = re.compile(
    r"^\d+; \d+ \d+ (?P<kind>" + "|".join(_KINDS) + r") (?P<schema>\S+) (?P<rest>.+)$"
)


def _tag(rest: str) -> str:
    """Return the tag of an entry: the rest of the line without the owner."""
    tag, _, _owner = rest.rpartition(" ")
    return tag or rest


def _wanted(kind: str, tag: str, table: TableEntry, chosen: set[str], present: set[str]) -> bool:
    name = table.name
    if kind in ("TABLE", "TABLE DATA", "ROW SECURITY"):
        return tag == name
    if kind == "TABLE ATTACH":
        return tag == name and table.parent in chosen
    if kind in ("CONSTRAINT", "CHECK CONSTRAINT", "TRIGGER", "POLICY", "RULE", "DEFAULT"):
        return tag.startswith(name + " ")
    if kind == "FK CONSTRAINT":
        if not tag.startswith(name + " "):
            return False
        referenced = table.foreign_keys.get(tag[len(name) + 1 :])
        return referenced is not None and (referenced in chosen or referenced in present)
    if kind == "INDEX":
        return tag in table.indexes
    if kind == "INDEX ATTACH":
        return tag in table.indexes and table.parent in chosen
    if kind in ("SEQUENCE", "SEQUENCE SET", "SEQUENCE OWNED BY"):
        return tag in table.sequences
    if kind in ("ACL", "COMMENT"):
        return (
            tag == f"TABLE {name}"
            or tag.startswith(f"COLUMN {name}.")
            or any(tag == f"SEQUENCE {seq}" for seq in table.sequences)
        )
    return False


def filter_list(lines: Iterable[str], tables: Iterable[TableEntry], present: set[str]) -> str:
    """Return the ``--use-list`` text that restores ``tables`` and what hangs on them.

    ``present`` holds the ``schema.name`` of the tables the target has already, which
    foreign keys may reference. The entries keep the dump's order.
    """
    chosen_tables = list(tables)
    chosen = {t.qualified for t in chosen_tables}
    by_schema: dict[str, list[TableEntry]] = {}
    for table in chosen_tables:
        by_schema.setdefault(table.schema, []).append(table)
    kept = []
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        tag = _tag(match["rest"])
        candidates = by_schema.get(match["schema"], ())
        if any(_wanted(match["kind"], tag, t, chosen, present) for t in candidates):
            kept.append(line.rstrip("\n"))
    return "\n".join(kept) + "\n"


def data_entries(lines: Iterable[str]) -> list[str]:
    """Return the ``schema.name`` of every ``TABLE DATA`` entry, in the list's order.

    pg_restore loads the tables' data in this order, one ``COPY`` each.
    """
    found = []
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match is not None and match["kind"] == "TABLE DATA":
            found.append(f"{match['schema']}.{_tag(match['rest'])}")
    return found
