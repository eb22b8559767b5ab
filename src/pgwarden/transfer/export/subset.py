"""Choose the rows to export: the rows asked for, and what foreign keys make them need.

A :class:`Selection` names a table and the filters its rows must pass (none: every row).
:func:`select_subset` turns selections into a :class:`Subset` that loads into an empty
database without a foreign-key error:

1. **Seed.** The rows of each selected table that pass its filters go into a temporary
   table of row ids, ``(tableoid, ctid)``, tagged with the step that added them.
2. **Children** (``children=N``, or ``None`` for every level): N times, add the rows of
   every table whose foreign key references a row added in the previous level.
3. **Parents**, to a fixed point: for each foreign key of each table with rows, add the
   referenced rows that rows added since the key was last followed point at; repeat
   until a whole pass adds nothing. Cycles and self-references (a category's parent, a
   reply's comment) end because a row is added once (the id table's primary key).

The ids are row locations, valid only in the snapshot they were read in: the whole
export runs in one REPEATABLE READ transaction, so every statement sees the same rows,
and the temporary tables (``ON COMMIT DROP``) vanish with it. Everything stays on the
server: a million ids cost a million rows in a temporary table, not in Python. A table
selected without a filter is never copied into an id table: it is exported whole.
Nullable foreign keys pointing outside the selection bring their parent in (a key with a
NULL column needs no parent, as MATCH SIMPLE says).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden.transfer.bundle import BundleForeignKey
from pgwarden.transfer.catalog import Catalog, CatalogTable
from pgwarden.transfer.export.filters import (
    Filter,
    check_filter,
    compile_filter,
    date_range,
    table_clause,
)

__all__ = ["Selection", "Subset", "TableSubset", "select_subset", "selection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """A table to export rows of, and the compiled filters its rows must pass (none: all)."""

    table: CatalogTable
    target: sa.TableClause
    filters: tuple[Filter, ...] = ()


@dataclass
class TableSubset:
    """The rows of one table in a subset: how many were asked for, how many closure added.

    ``keys`` names the temporary table of their row ids, or is ``None`` when every row
    of the table is in.
    """

    table: CatalogTable
    keys: str | None
    direct: int = 0
    added: int = 0
    last_step: int = 0

    @property
    def rows(self) -> int:
        """Return the number of rows in the subset (estimated for a whole table)."""
        return self.direct + self.added

    def source(self, alias: str = "t") -> str:
        """Return ``FROM ... WHERE ...`` picking the subset's rows of the table, as ``alias``."""
        return _rows_of(self.table, alias, self.keys, since=None)


@dataclass
class Subset:
    """The rows chosen in each table, in one snapshot; valid until its transaction ends."""

    catalog: Catalog
    tables: dict[str, TableSubset] = field(default_factory=dict)
    detached: dict[str, list[BundleForeignKey]] = field(default_factory=dict)

    def order(self) -> tuple[list[str], list[list[str]]]:
        """Return the tables parents first, and the cycles between them."""
        return self.catalog.dependency_order(self.tables)

    def nulled_columns(self, name: str, alias: str = "t") -> dict[str, str]:
        """Return SQL per column that NULLs a detached key whose parent is not exported.

        With ``nullable="null"``, nullable foreign keys are not followed; a row keeps
        such a key only when the parent it points at is in the subset anyway.
        """
        overrides: dict[str, str] = {}
        for fk in self.detached.get(name, []):
            parent = self.tables.get(fk.references)
            if parent is not None and parent.keys is None:
                continue  # every parent row is exported
            if parent is None:
                present = "false"
            else:
                mine = ", ".join(f"{alias}.{quote(c)}" for c in fk.columns)
                theirs = ", ".join(f"p.{quote(c)}" for c in fk.ref_columns)
                rows = _rows_of(parent.table, "p", parent.keys, since=None)
                present = f"({mine}) IN (SELECT {theirs} {rows})"
            for column in fk.columns:
                overrides[column] = f"CASE WHEN {present} THEN {alias}.{quote(column)} END"
        return overrides


def selection(
    catalog: Catalog,
    name: str,
    *,
    where: Iterable[str] = (),
    date_column: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Selection:
    """Return the selection of table ``name`` filtered by ``where`` and the date range.

    Parses and compiles every filter now, so a mistake is reported before any SQL runs.
    """
    table = catalog.table(name)
    target = table_clause(table)
    filters = [compile_filter(source, table, target) for source in where]
    if date_column is not None:
        filters.append(date_range(table, target, date_column, since=since, until=until))
    return Selection(table, target, tuple(filters))


def select_subset(
    conn: Connection,
    catalog: Catalog,
    selections: Sequence[Selection],
    *,
    children: int | None = 0,
    parents: bool = True,
    nullable: Literal["include", "null"] = "include",
) -> Subset:
    """Seed the selections' rows, add children to ``children`` levels, then every parent.

    Run it inside the transaction that exports the rows (REPEATABLE READ): the subset's
    row ids are valid only there. ``children=None`` follows children to every level.
    ``nullable="null"`` does not follow foreign keys whose columns may be NULL: the
    export writes NULL there when the parent is not exported (:meth:`Subset.nulled_columns`).
    """
    check_filter(conn, [f for s in selections for f in s.filters])
    closure = _Closure(conn, catalog, detach=nullable == "null")
    for chosen in selections:
        closure.seed(chosen)
    if children is None or children > 0:
        closure.add_children(children)
    if parents:
        closure.add_parents()
    for part in closure.subset.tables.values():
        if part.keys is None:
            part.direct = part.table.estimated_rows
    return closure.subset


class _Closure:
    def __init__(self, conn: Connection, catalog: Catalog, *, detach: bool) -> None:
        self.conn = conn
        self.catalog = catalog
        self.detach = detach
        self.subset = Subset(catalog)
        self.step = 0

    def part(self, name: str) -> TableSubset:
        part = self.subset.tables.get(name)
        if part is None:
            keys = f"pgw_keys_{len(self.subset.tables) + 1}"
            self.conn.execute(
                text(
                    f"CREATE TEMPORARY TABLE {keys} ("
                    " rel oid NOT NULL, tid tid NOT NULL, step integer NOT NULL,"
                    " PRIMARY KEY (rel, tid)"
                    ") ON COMMIT DROP"
                )
            )
            part = TableSubset(self.catalog.tables[name], keys)
            self.subset.tables[name] = part
        return part

    def next_step(self) -> int:
        self.step += 1
        return self.step

    def seed(self, chosen: Selection) -> None:
        name = chosen.table.qualified
        if not chosen.filters:
            existing = self.subset.tables.get(name)
            if existing is not None and existing.keys is not None:
                self.conn.execute(text(f"DROP TABLE {existing.keys}"))
            self.subset.tables[name] = TableSubset(chosen.table, None, last_step=self.next_step())
            return
        part = self.part(name)
        if part.keys is None:
            return
        step = self.next_step()
        target = chosen.target
        rows = sa.select(target.c.tableoid, target.c.ctid, sa.literal(step, sa.Integer()))
        rows = rows.where(*(f.clause for f in chosen.filters))
        if not chosen.table.partitioned:
            rows = rows.with_hint(target, "ONLY", "postgresql")
        keys = sa.table(part.keys, sa.column("rel"), sa.column("tid"), sa.column("step"))
        self.conn.execute(
            insert(keys).from_select(["rel", "tid", "step"], rows).on_conflict_do_nothing()
        )
        # SQLAlchemy reports no row count for an INSERT ... SELECT construct: count them.
        count = text(f"SELECT count(*) FROM {part.keys} WHERE step = :step")
        added = self.conn.execute(count, {"step": step}).scalar_one()
        self._record(part, step, added, direct=True)

    def add_children(self, depth: int | None) -> None:
        # A level's frontier is the rows added by the level before: steps in (done, upto].
        done, level = 0, 0
        while depth is None or level < depth:
            level += 1
            upto = self.step
            frontier = [p for p in self.subset.tables.values() if p.last_step > done]
            grew = False
            for parent in frontier:
                for child_name, fk in self.catalog.children(parent.table.qualified):
                    if self._follow_child(parent, child_name, fk, since=done, upto=upto):
                        grew = True
            done = upto
            if not grew:
                break

    def _follow_child(
        self, parent: TableSubset, child_name: str, fk: BundleForeignKey, *, since: int, upto: int
    ) -> bool:
        child = self.subset.tables.get(child_name)
        if child is not None and child.keys is None:
            return False
        child = self.part(child_name)
        assert child.keys is not None
        step = self.next_step()
        child_cols = ", ".join(f"c.{quote(col)}" for col in fk.columns)
        parent_cols = ", ".join(f"p.{quote(col)}" for col in fk.ref_columns)
        not_null = " AND ".join(f"c.{quote(col)} IS NOT NULL" for col in fk.columns)
        rows = _rows_of(parent.table, "p", parent.keys, since=since, upto=upto)
        statement = (
            f"INSERT INTO {child.keys} (rel, tid, step)"
            f" SELECT c.tableoid, c.ctid, :step"
            f" {_from(child.table, 'c')}"
            f" WHERE {not_null}"
            f" AND ({child_cols}) IN (SELECT {parent_cols} {rows})"
            f" ON CONFLICT DO NOTHING"
        )
        params = {"step": step, "since": since, "upto": upto}
        added = self.conn.execute(text(statement), params).rowcount
        return self._record(child, step, added, direct=False)

    def add_parents(self) -> None:
        followed: dict[tuple[str, int], int] = {}
        changed = True
        while changed:
            changed = False
            for name in sorted(self.subset.tables):
                child = self.subset.tables[name]
                for number, fk in enumerate(child.table.foreign_keys):
                    seen = followed.get((name, number), 0)
                    if child.last_step <= seen or fk.references not in self.catalog.tables:
                        continue
                    if self.detach and _optional(child.table, fk):
                        detached = self.subset.detached.setdefault(name, [])
                        if fk not in detached:
                            detached.append(fk)
                        continue
                    followed[(name, number)] = self.step
                    if self._follow_parent(child, fk, since=seen):
                        changed = True

    def _follow_parent(self, child: TableSubset, fk: BundleForeignKey, *, since: int) -> bool:
        parent = self.subset.tables.get(fk.references)
        if parent is not None and parent.keys is None:
            return False
        parent = self.part(fk.references)
        assert parent.keys is not None
        step = self.next_step()
        child_cols = ", ".join(f"c.{quote(col)}" for col in fk.columns)
        parent_cols = ", ".join(f"p.{quote(col)}" for col in fk.ref_columns)
        not_null = " AND ".join(f"c.{quote(col)} IS NOT NULL" for col in fk.columns)
        rows = _rows_of(child.table, "c", child.keys, since=since)
        statement = (
            f"INSERT INTO {parent.keys} (rel, tid, step)"
            f" SELECT p.tableoid, p.ctid, :step"
            f" {_from(parent.table, 'p')}"
            f" WHERE ({parent_cols}) IN (SELECT {child_cols} {rows} AND {not_null})"
            f" ON CONFLICT DO NOTHING"
        )
        added = self.conn.execute(text(statement), {"step": step, "since": since}).rowcount
        return self._record(parent, step, added, direct=False)

    def _record(self, part: TableSubset, step: int, added: int, *, direct: bool) -> bool:
        if added <= 0:
            return False
        if direct:
            part.direct += added
        else:
            part.added += added
        part.last_step = step
        log.debug("%s: +%d rows at step %d", part.table.qualified, added, step)
        return True


def _optional(table: CatalogTable, fk: BundleForeignKey) -> bool:
    nullable = {column.name for column in table.columns if column.nullable}
    return all(column in nullable for column in fk.columns)


def _from(table: CatalogTable, alias: str) -> str:
    only = "" if table.partitioned else "ONLY "
    return f"FROM {only}{quote(table.schema)}.{quote(table.name)} AS {alias}"


def _rows_of(
    table: CatalogTable, alias: str, keys: str | None, *, since: int | None, upto: int | None = None
) -> str:
    """Return ``FROM ... WHERE ...`` for the rows of ``table`` whose ids are in ``keys``.

    ``since`` keeps only ids added after that step (a ``:since`` parameter), ``upto``
    only those added up to that step (``:upto``). A plain
    table is read by row location (a TID scan, whatever the id table's statistics); a
    partitioned one by (partition, location), since locations repeat across partitions.
    """
    source = _from(table, alias)
    if keys is None:
        return f"{source} WHERE true"
    steps = [] if since is None else ["step > :since"]
    steps += [] if upto is None else ["step <= :upto"]
    newer = f" WHERE {' AND '.join(steps)}" if steps else ""
    if table.partitioned:
        ids = f"SELECT rel, tid FROM {keys}{newer}"
        return f"{source} WHERE ({alias}.tableoid, {alias}.ctid) IN ({ids})"
    return f"{source} WHERE {alias}.ctid = ANY(ARRAY(SELECT tid FROM {keys}{newer}))"
