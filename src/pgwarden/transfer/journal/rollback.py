"""Undo a recorded import or erase exactly, or refuse when its rows changed since.

::

    with engine.connect() as conn:
        report = rollback_run(conn, 7)             # RollbackRefused if rows moved on

From the run's journal (:mod:`pgwarden.transfer.journal.runs`), in one transaction and with
user triggers off (the rows come back as they were, ``updated_at`` and all):

1. rows the run deleted are inserted again, parents first;
2. rows the run updated get their previous version back, parents first;
3. rows the run inserted are deleted, children first.

Before touching anything it checks that every row the run wrote is still as the run
left it (its ``xmin`` is still the one the journal recorded, the id of the
(sub)transaction that wrote it: any later update gives a row another one; a row deleted
since counts as changed; journals of older versions and erases compare the ``md5`` of
the row's text with ``new_hash`` instead), that no row the run deleted has been created
again, and that no row outside the run references a row it inserted. Any such row refuses the whole
rollback with :class:`RollbackRefused`, which lists them; nothing is changed. A
rolled-back run is marked so, and cannot be rolled back twice.

Sequences moved forward by an import stay where they are (a gap in ids is harmless).

A dump and restore (or any copy of the rows) gives every row a new ``xmin``: a run
cannot be rolled back after one, and the refusal says so when none of its rows still
carries the ``xmin`` it left. ``VACUUM FREEZE``, ``VACUUM FULL``, ``CLUSTER`` and
``pg_upgrade`` keep ``xmin``. A run more than 2^31 transactions old is refused too:
32-bit transaction ids repeat, so ``xmin`` no longer proves a row unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden._sql import split_table_key, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogTable, load_catalog, load_tables
from pgwarden.transfer.errors import RollbackRefused
from pgwarden.transfer.journal.runs import ensure_journal, get_run, pin_settings
from pgwarden.transfer.load._clauses import column_list, key_json, match, triggers_off
from pgwarden.transfer.load._job import transaction

__all__ = ["ChangedRow", "RollbackReport", "RollbackTable", "rollback_run"]

_ENTRIES = text(
    """
SELECT schema_name, table_name, action, count(*) AS rows,
       (array_agg(coalesce(key, keys)))[1] AS sample_key,
       bool_or(new_hash IS NULL AND action <> 'delete') AS by_xmin,
       bool_and(previous_row IS NOT NULL) AS by_row,
       (SELECT array_agg(DISTINCT k)
        FROM pgwarden.import_journal AS p, jsonb_object_keys(p.previous) AS k
        WHERE p.run_id = :run AND p.schema_name = j.schema_name
          AND p.table_name = j.table_name AND p.action = j.action) AS previous_columns
FROM pgwarden.import_journal AS j
WHERE run_id = :run
GROUP BY schema_name, table_name, action
"""
)

_LOCK = text(
    "SELECT status, txid_current() - xid AS age FROM pgwarden.import_run WHERE id = :run FOR UPDATE"
)

# Beyond this many transactions a 32-bit xid may have been handed out again.
_XID_HORIZON = 2**31

_MARK = text(
    """
UPDATE pgwarden.import_run
SET status = 'rolled_back', rolled_back_at = clock_timestamp()
WHERE id = :run
"""
)

_FROM_JOURNAL = (
    "pgwarden.import_journal AS j\n"
    "  CROSS JOIN LATERAL jsonb_to_record(j.{field}) AS {alias}({definitions})\n"
)
# A row kept as its text comes back by a cast to the table's row type: each value
# through its type's input function, exactly as it was.
_ROW_FROM_JOURNAL = (
    "pgwarden.import_journal AS j\n"
    "  CROSS JOIN LATERAL (SELECT (CAST(j.previous_row AS {table})).*) AS {alias}\n"
)
_WRITTEN, _INSERTED, _DELETED = "'insert', 'update'", "'insert'", "'delete'"
_THIS_TABLE = "j.run_id = :run AND j.schema_name = :schema AND j.table_name = :table"


@dataclass(frozen=True)
class ChangedRow:
    """A row that stops a rollback: ``why`` is ``changed``, ``deleted``, ``recreated``
    (a row the run deleted exists again) or ``referenced`` (a row outside the run points
    at a row the run inserted; ``key`` is the referencing row's)."""

    table: str
    key: dict[str, Any]
    why: str


@dataclass
class RollbackTable:
    """What a rollback did to one table."""

    table: str
    deleted: int = 0
    restored: int = 0
    reinserted: int = 0


@dataclass
class RollbackReport:
    """A rollback done (or, with ``dry_run``, checked and undone)."""

    run_id: int
    dry_run: bool
    tables: list[RollbackTable] = field(default_factory=list)


@dataclass
class _Journaled:
    target: CatalogTable
    actions: dict[str, int]
    key: list[str]
    previous: dict[str, list[str]]
    params: dict[str, Any]
    by_xmin: bool = False
    by_row: bool = True  # every previous version is kept as the row's text

    def previous_rows(self, columns: list[str]) -> str:
        """Return the journal joined to its previous versions, as ``pgw_p``."""
        if self.by_row:
            return _ROW_FROM_JOURNAL.format(table=self.target.sql, alias="pgw_p")
        definitions = ", ".join(f"{quote(c)} {self.target.by_name[c].type}" for c in columns)
        return _FROM_JOURNAL.format(field="previous", alias="pgw_p", definitions=definitions)


def rollback_run(
    conn: Connection, run_id: int, *, dry_run: bool = False, limit: int = 20
) -> RollbackReport:
    """Restore the rows run ``run_id`` changed to what they were before it.

    Raises :class:`RollbackRefused` (listing at most ``limit`` rows) when rows changed
    after the run, and :class:`UserError` for an unknown, purged or rolled-back run.
    """
    report = RollbackReport(run_id, dry_run)
    with transaction(conn, dry_run):
        pin_settings(conn)
        run = get_run(conn, run_id)
        ensure_journal(conn)  # a journal of an older version gains its new columns
        status, age = conn.execute(_LOCK, {"run": run_id}).one()
        if status == "rolled_back":
            raise UserError(f"run {run_id} was rolled back already, at {run.rolled_back_at}.")
        if status == "purged":
            raise UserError(f"run {run_id}'s journal was purged; it cannot be rolled back.")
        tables = _journaled(conn, run_id)
        if age is not None and age >= _XID_HORIZON and any(t.by_xmin for t in tables.values()):
            raise UserError(
                f"run {run_id} is {age} transactions old; its rows can no longer be told"
                " unchanged by their xmin (transaction ids repeat), so it cannot be rolled back."
            )
        order, _ = load_catalog(conn).dependency_order(tables)
        entries = [tables[name] for name in order]
        changed, total = _check(conn, run_id, entries, limit)
        if changed:
            raise RollbackRefused(
                run_id,
                changed,
                total,
                _restored_since(conn, entries),
                by_xmin=any(entry.by_xmin for entry in entries),
            )
        counts = {name: RollbackTable(name) for name in order}
        conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")
        with triggers_off(conn, [tables[name].target for name in order]):
            for name in order:
                counts[name].reinserted = _reinsert(conn, tables[name])
            for name in order:
                counts[name].restored = _restore(conn, tables[name])
            for name in reversed(order):
                counts[name].deleted = _delete(conn, tables[name])
        conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute(_MARK, {"run": run_id})
        report.tables = [counts[name] for name in order]
    return report


def _journaled(conn: Connection, run_id: int) -> dict[str, _Journaled]:
    rows = conn.execute(_ENTRIES, {"run": run_id}).all()
    names = sorted({(row.schema_name, row.table_name) for row in rows})
    targets = load_tables(conn, names)
    found: dict[str, _Journaled] = {}
    for row in rows:
        name = table_key(row.schema_name, row.table_name)
        target = targets.get(name)
        if target is None:
            raise UserError(f"run {run_id} changed {name}, which no longer exists.")
        key = sorted(row.sample_key)
        unknown = [c for c in [*key, *(row.previous_columns or [])] if c not in target.by_name]
        if unknown:
            raise UserError(
                f"{name} has no column(s) {', '.join(sorted(set(unknown)))} any more; run"
                f" {run_id} cannot be rolled back.",
                hint="Its schema changed since; the journal's rows no longer fit.",
            )
        entry = found.setdefault(
            name,
            _Journaled(
                target, {}, key, {},
                {"run": run_id, "schema": target.schema, "table": target.name},
            ),
        )  # fmt: skip
        entry.actions[row.action] = int(row.rows)
        entry.by_xmin = entry.by_xmin or bool(row.by_xmin)
        if row.action != "insert":
            entry.by_row = entry.by_row and bool(row.by_row)
        entry.previous[row.action] = [
            c for c in target.writable if c in set(row.previous_columns or [])
        ]
    return found


def _key_join(entry: _Journaled, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(c)} = {right}.{quote(c)}" for c in entry.key)


def _journal_keys(
    target: CatalogTable,
    key: Sequence[str],
    actions: str,
    schema: str = ":schema",
    table: str = ":table",
) -> str:
    """Return a subquery of the keys the run journaled for ``target`` under ``actions``.

    Keys are journaled one row each (``key``) or a batch of inserted rows at a time
    (``keys``: an array a key column); both come out typed as the columns, with the
    journal's ``pgw_hash`` (``new_hash``) and ``pgw_xmin`` (``written_xmin``, or for a
    partitioned table the journal row's own ``xmin``, written by the same statement).
    """
    definitions = ", ".join(f"{quote(c)} {target.by_name[c].type}" for c in key)
    arrays = ", ".join(f"{quote(c)} {target.by_name[c].type}[]" for c in key)
    where = (
        f"j.run_id = :run AND j.schema_name = {schema} AND j.table_name = {table}"
        f" AND j.action IN ({actions})"
    )
    return (
        f"(SELECT {column_list(key, 'pgw_r')}, j.new_hash AS pgw_hash,"
        " coalesce(j.written_xmin, j.xmin) AS pgw_xmin\n"
        "  FROM pgwarden.import_journal AS j\n"
        f"  CROSS JOIN LATERAL jsonb_to_record(j.key) AS pgw_r({definitions})\n"
        f"  WHERE {where} AND j.key IS NOT NULL\n"
        "  UNION ALL\n"
        f"  SELECT {column_list(key, 'pgw_u')}, NULL, coalesce(j.written_xmin, j.xmin)\n"
        "  FROM pgwarden.import_journal AS j\n"
        f"  CROSS JOIN LATERAL jsonb_to_record(j.keys) AS pgw_a({arrays})\n"
        f"  CROSS JOIN LATERAL unnest({column_list(key, 'pgw_a')}) AS pgw_u({column_list(key)})\n"
        f"  WHERE {where} AND j.keys IS NOT NULL)"
    )


def _check(
    conn: Connection, run_id: int, tables: list[_Journaled], limit: int
) -> tuple[list[ChangedRow], int]:
    changed: list[ChangedRow] = []
    total = 0
    for entry in tables:
        name = entry.target.qualified
        params = {**entry.params, "limit": limit}
        shown = key_json(entry.key, "pgw_k", params, "pgw_c")
        first = quote(entry.key[0])
        joined = f"{entry.target.sql} AS pgw_t ON {_key_join(entry, 'pgw_t', 'pgw_k')}\n"
        # A row the run wrote is unchanged while it keeps the xmin the run left it
        # (journals without one: while its text hashes to new_hash).
        written = text(
            f"SELECT {shown} AS key, pgw_t.{first} IS NULL AS gone, count(*) OVER () AS total\n"
            f"FROM {_journal_keys(entry.target, entry.key, _WRITTEN)} AS pgw_k\n"
            f"LEFT JOIN {joined}"
            f"WHERE pgw_t.{first} IS NULL OR CASE WHEN pgw_k.pgw_hash IS NOT NULL"
            " THEN md5(ROW(pgw_t.*)::text) IS DISTINCT FROM pgw_k.pgw_hash"
            " ELSE NOT (pgw_t.xmin = pgw_k.pgw_xmin) END\n"
            "LIMIT :limit"
        )
        recreated = text(
            f"SELECT {shown} AS key, false AS gone, count(*) OVER () AS total\n"
            f"FROM {_journal_keys(entry.target, entry.key, _DELETED)} AS pgw_k\n"
            f"JOIN {joined}LIMIT :limit"
        )
        for query, why in ((written, None), (recreated, "recreated")):
            rows = conn.execute(query, params).all()
            total += int(rows[0].total) if rows else 0
            changed += [
                ChangedRow(name, dict(r.key), why or ("deleted" if r.gone else "changed"))
                for r in rows
            ]
        if entry.actions.get("insert"):
            found, count = _references(conn, run_id, entry, limit)
            changed += found
            total += count
    return changed[:limit], total


def _restored_since(conn: Connection, tables: list[_Journaled]) -> str | None:
    """Explain a refusal where no row still has the xmin the run left it: a dump and restore?"""
    checked = [entry for entry in tables if entry.by_xmin]
    if not checked:
        return None
    for entry in checked:
        query = text(
            "SELECT EXISTS (SELECT\n"
            f"  FROM {_journal_keys(entry.target, entry.key, _WRITTEN)} AS pgw_k\n"
            f"  JOIN {entry.target.sql} AS pgw_t ON {_key_join(entry, 'pgw_t', 'pgw_k')}\n"
            "  WHERE pgw_k.pgw_hash IS NULL AND pgw_t.xmin = pgw_k.pgw_xmin)"
        )
        if conn.execute(query, entry.params).scalar_one():
            return None
    return (
        "None of the rows the run wrote still carries the transaction id (xmin) it left"
        " them with: they were all changed since, or the tables were restored from a dump"
        " (or copied) since, and a run cannot be rolled back after a dump and restore."
    )


def _references(
    conn: Connection, run_id: int, entry: _Journaled, limit: int
) -> tuple[list[ChangedRow], int]:
    """Return rows outside the run that reference rows the run inserted."""
    changed: list[ChangedRow] = []
    total = 0
    names = [split_table_key(fk.table) for fk in entry.target.referenced_by]
    referencing = load_tables(conn, names)
    inserted = _journal_keys(entry.target, entry.key, _INSERTED)
    for fk in entry.target.referenced_by:
        other = referencing[fk.table]
        params = {**entry.params, "limit": limit, "rschema": other.schema, "rtable": other.name}
        join = " AND ".join(
            f"pgw_r.{quote(c)} = pgw_t.{quote(r)}"
            for c, r in zip(fk.columns, fk.ref_columns, strict=True)
        )
        if other.primary_key:
            shown = key_json(other.primary_key, "pgw_r", params, "pgw_o")
            theirs = _journal_keys(other, other.primary_key, _WRITTEN, ":rschema", ":rtable")
            outside = (
                f"NOT EXISTS (SELECT FROM {theirs} AS pgw_o\n"
                f"  WHERE {match(other.primary_key, 'pgw_o', 'pgw_r')})"
            )
        else:
            shown, outside = "to_jsonb(pgw_r.*)", "true"
        query = text(
            f"SELECT {shown} AS key, count(*) OVER () AS total\n"
            f"FROM {other.sql} AS pgw_r\n"
            f"JOIN {entry.target.sql} AS pgw_t ON {join}\n"
            f"JOIN {inserted} AS pgw_k ON {_key_join(entry, 'pgw_t', 'pgw_k')}\n"
            f"WHERE {outside}\nLIMIT :limit"
        )
        rows = conn.execute(query, params).all()
        total += int(rows[0].total) if rows else 0
        changed += [ChangedRow(fk.table, dict(r.key), "referenced") for r in rows]
    return changed, total


def _count(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    counted = f"WITH pgw_r AS (\n{sql}\n  RETURNING 1\n)\nSELECT count(*) FROM pgw_r"
    return int(conn.execute(text(counted), params).scalar_one())


def _reinsert(conn: Connection, entry: _Journaled) -> int:
    if not entry.actions.get("delete"):
        return 0
    columns = entry.previous["delete"]
    overriding = (
        " OVERRIDING SYSTEM VALUE"
        if any(entry.target.by_name[c].identity == "a" for c in columns)
        else ""
    )
    source = entry.previous_rows(columns)
    sql = (
        f"  INSERT INTO {entry.target.sql} ({column_list(columns)}){overriding}\n"
        f"  SELECT {column_list(columns, 'pgw_p')}\n  FROM {source}"
        f"  WHERE {_THIS_TABLE} AND j.action = 'delete'"
    )
    return _count(conn, sql, entry.params)


def _restore(conn: Connection, entry: _Journaled) -> int:
    if not entry.actions.get("update"):
        return 0
    columns = entry.previous["update"]
    settable = [
        c for c in columns if c not in entry.key and entry.target.by_name[c].identity != "a"
    ]
    if not settable:
        return 0
    source = entry.previous_rows(columns)
    sets = ", ".join(f"{quote(c)} = pgw_p.{quote(c)}" for c in settable)
    sql = (
        f"  UPDATE {entry.target.sql} AS pgw_t SET {sets}\n  FROM {source}"
        f"  WHERE {_THIS_TABLE} AND j.action = 'update'"
        f" AND {_key_join(entry, 'pgw_t', 'pgw_p')}"
    )
    return _count(conn, sql, entry.params)


def _delete(conn: Connection, entry: _Journaled) -> int:
    if not entry.actions.get("insert"):
        return 0
    sql = (
        f"  DELETE FROM {entry.target.sql} AS pgw_t\n"
        f"  USING {_journal_keys(entry.target, entry.key, _INSERTED)} AS pgw_k\n"
        f"  WHERE {_key_join(entry, 'pgw_t', 'pgw_k')}"
    )
    return _count(conn, sql, entry.params)
