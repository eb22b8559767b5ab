"""Record every import and erase as a run, with the rows it changed, so it can be undone.

A run and its journal live in the ``pgwarden`` schema of the database they changed,
written in the same transaction as the change: a failed import leaves neither data nor
journal::

    pgwarden.import_run      id, kind (import|erase), mode, status, source, per-table counts,
                             xid (the run's 64-bit transaction id)
    pgwarden.import_journal  run_id, schema_name, table_name, action, key | keys, previous,
                             written_xmin, new_hash

``action`` is what the run did to the rows: ``insert``, ``update`` (``previous`` holds
the whole row before) or ``delete`` (``previous`` holds the row). ``previous`` is the
row as JSON, for people and queries; ``previous_row`` is its text as PostgreSQL prints
a row, read back by casting it to the table's row type, which is what a rollback
restores: JSON would rewrite a ``json`` value's text, lose the sign of ``-0`` and
misread BC dates. A journal row names
one row by ``key`` (``{"id": 7}``), or, for the rows one statement inserted, all of
them by ``keys``: for each key column the text of an array of its values
(``{"id": "{7,8,9}"}``), read back typed as the column by ``jsonb_to_record``.

``written_xmin`` is the ``xmin`` the rows were left with: the (sub)transaction id of
the statement that wrote them. Every later change of a row gives it another ``xmin``
(and a delete removes it), so :func:`pgwarden.transfer.journal.rollback.rollback_run` tells a
row changed since by ``xmin`` alone, without hashing rows. A partitioned table cannot
return ``xmin`` from an ``INSERT``: its journal rows leave ``written_xmin`` NULL and
stand for it with their own ``xmin``, which the same statement gave them (journal rows
are never updated). ``xmin`` survives freezing,
``VACUUM FULL``, ``CLUSTER`` and ``pg_upgrade``, but not a dump and restore. Journals
written before ``written_xmin`` existed (and erases) hold ``new_hash`` instead, the
``md5`` of the row's text as the run left it, and are checked that way.

The journal is written set-based, by ``INSERT ... SELECT`` from the statement that made
the change, never row by row. It has no foreign key to its run, on purpose: a check per
journal row would cost a third of an import's time; :func:`purge_run` deletes a run's
rows itself.

Journals of erases hold the erased rows: :func:`purge_run` deletes a run's journal
(and with it the possibility of rolling it back) once the erase is confirmed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.errors import UserError

__all__ = [
    "Run",
    "RunStatus",
    "ensure_journal",
    "finish_run",
    "get_run",
    "list_runs",
    "pin_settings",
    "purge_run",
    "start_run",
]

RunStatus = Literal["running", "committed", "rolled_back", "purged"]

_LOCK_KEY = 7_061_720_193  # serialises creating the schema between concurrent runs

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.import_run (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('import', 'erase')),
  mode text NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'committed', 'rolled_back', 'purged')),
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  rolled_back_at timestamptz,
  database_user name NOT NULL DEFAULT current_user,
  source jsonb NOT NULL DEFAULT '{}',
  manifest_sha256 text,
  tables jsonb NOT NULL DEFAULT '{}',
  xid bigint DEFAULT txid_current()
)
""",
    """
CREATE TABLE IF NOT EXISTS pgwarden.import_journal (
  run_id bigint NOT NULL,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  action text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
  key jsonb,
  keys jsonb,
  previous jsonb,
  previous_row text,
  new_hash text,
  written_xmin xid,
  CONSTRAINT import_journal_previous CHECK ((action = 'insert') = (previous IS NULL)),
  CONSTRAINT import_journal_one_key CHECK ((key IS NULL) <> (keys IS NULL)),
  CONSTRAINT import_journal_written CHECK (
    action <> 'delete' OR (new_hash IS NULL AND written_xmin IS NULL))
)
""",
    """
CREATE INDEX IF NOT EXISTS import_journal_run
  ON pgwarden.import_journal (run_id, schema_name, table_name, action)
""",
)

# A journal created before runs were checked by xmin: one jsonb key per row, new_hash.
_UPGRADE = (
    "ALTER TABLE pgwarden.import_run ADD COLUMN IF NOT EXISTS xid bigint",
    "ALTER TABLE pgwarden.import_run ALTER COLUMN xid SET DEFAULT txid_current()",
    "ALTER TABLE pgwarden.import_journal ADD COLUMN IF NOT EXISTS keys jsonb,"
    " ADD COLUMN IF NOT EXISTS written_xmin xid, ALTER COLUMN key DROP NOT NULL,"
    " DROP CONSTRAINT IF EXISTS import_journal_check1",
    "ALTER TABLE pgwarden.import_journal"
    " ADD CONSTRAINT import_journal_one_key CHECK ((key IS NULL) <> (keys IS NULL)),"
    " ADD CONSTRAINT import_journal_written CHECK ("
    "action <> 'delete' OR (new_hash IS NULL AND written_xmin IS NULL))",
)

# Row hashes compare the text form of rows written by one session with rows read by
# another: every setting that changes how a value prints is fixed for both.
_PINNED = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, MDY'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
)

_EXISTS = text("SELECT to_regclass('pgwarden.import_run') IS NOT NULL")
_JOURNAL_EXISTS = text("SELECT to_regclass('pgwarden.import_journal') IS NOT NULL")
_HAS_COLUMN = text(
    """
SELECT EXISTS (SELECT FROM pg_attribute
               WHERE attrelid = to_regclass('pgwarden.import_journal')
                 AND attname = :column AND NOT attisdropped)
"""
)
# A journal of before rows were kept as their text: it gains the column.
_ADD_ROW_TEXT = "ALTER TABLE pgwarden.import_journal ADD COLUMN IF NOT EXISTS previous_row text"

_START = text(
    """
INSERT INTO pgwarden.import_run (kind, mode, status, source, manifest_sha256)
VALUES (:kind, :mode, 'running', CAST(:source AS jsonb), :manifest_sha256)
RETURNING id
"""
)

_FINISH = text(
    """
UPDATE pgwarden.import_run
SET status = 'committed',
    finished_at = clock_timestamp(),
    tables = CAST(:tables AS jsonb)
WHERE id = :id
"""
)

_RUN_COLUMNS = """
SELECT id, kind, mode, status, started_at, finished_at, rolled_back_at, database_user,
       source, manifest_sha256, tables,
       (SELECT count(*) FROM pgwarden.import_journal j WHERE j.run_id = r.id) AS journal_rows
FROM pgwarden.import_run r
"""

_LIST = text(_RUN_COLUMNS + "ORDER BY id DESC\nLIMIT :limit")
_GET = text(_RUN_COLUMNS + "WHERE id = :id")

_PURGE = text(
    """
WITH gone AS (
  DELETE FROM pgwarden.import_journal
  WHERE run_id = :id
  RETURNING 1
)
UPDATE pgwarden.import_run
SET status = 'purged'
WHERE id = :id
RETURNING (SELECT count(*) FROM gone) AS rows
"""
)


@dataclass(frozen=True)
class Run:
    """One recorded import or erase.

    ``tables`` maps ``schema.name`` to the run's counts for it (``inserted``,
    ``updated``, ``deleted``...); ``journal_rows`` is how many rows its journal holds.
    """

    id: int
    kind: str
    mode: str
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    rolled_back_at: dt.datetime | None
    database_user: str
    source: dict[str, Any]
    manifest_sha256: str | None
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    journal_rows: int = 0


def pin_settings(conn: Connection) -> None:
    """Fix, for the current transaction, the settings that change how values print."""
    for statement in _PINNED:
        conn.exec_driver_sql(statement)


def ensure_journal(conn: Connection) -> None:
    """Create the ``pgwarden`` schema and the journal tables if missing (in the transaction).

    A journal of an older pgwarden (a ``key`` per row, ``new_hash``) is brought up to date;
    its runs can still be rolled back.

        Creating them takes a lock held to the end of the transaction, so two first runs
        do not race; once they exist, runs take no lock here and go on side by side.
    """
    if conn.execute(_HAS_COLUMN, {"column": "previous_row"}).scalar_one():
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    upgrade = conn.execute(_JOURNAL_EXISTS).scalar_one()
    for statement in _DDL:
        conn.exec_driver_sql(statement)
    if upgrade:
        if not conn.execute(_HAS_COLUMN, {"column": "written_xmin"}).scalar_one():
            for statement in _UPGRADE:
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql(_ADD_ROW_TEXT)


def start_run(
    conn: Connection,
    *,
    kind: Literal["import", "erase"],
    mode: str,
    source: dict[str, Any],
    manifest_sha256: str | None = None,
) -> int:
    """Record the start of a run in the current transaction and return its id."""
    ensure_journal(conn)
    params = {
        "kind": kind,
        "mode": mode,
        "source": json.dumps(source, sort_keys=True),
        "manifest_sha256": manifest_sha256,
    }
    return int(conn.execute(_START, params).scalar_one())


def finish_run(conn: Connection, run_id: int, tables: dict[str, dict[str, int]]) -> None:
    """Mark run ``run_id`` committed with its per-table counts (its transaction commits it)."""
    conn.execute(_FINISH, {"id": run_id, "tables": json.dumps(tables, sort_keys=True)})


def list_runs(conn: Connection, *, limit: int = 20) -> list[Run]:
    """Return the latest ``limit`` runs, newest first (none when nothing was ever imported)."""
    if not conn.execute(_EXISTS).scalar_one():
        return []
    return [_run(row) for row in conn.execute(_LIST, {"limit": limit})]


def get_run(conn: Connection, run_id: int) -> Run:
    """Return run ``run_id``, or raise UserError when there is no such run."""
    row = conn.execute(_GET, {"id": run_id}).first() if conn.execute(_EXISTS).scalar_one() else None
    if row is None:
        raise UserError(
            f"there is no run {run_id}.",
            hint="`pgwarden import runs` lists the runs recorded in this database.",
        )
    return _run(row)


def purge_run(conn: Connection, run_id: int) -> int:
    """Delete run ``run_id``'s journal, so it can no longer be rolled back; return its rows.

    For an erase, this is what finally erases: until then the journal holds the rows.
    """
    run = get_run(conn, run_id)
    if run.status == "purged":
        raise UserError(f"run {run_id} was purged already.")
    return int(conn.execute(_PURGE, {"id": run_id}).scalar_one())


def _run(row: Any) -> Run:
    return Run(
        id=row.id,
        kind=row.kind,
        mode=row.mode,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        rolled_back_at=row.rolled_back_at,
        database_user=row.database_user,
        source=dict(row.source or {}),
        manifest_sha256=row.manifest_sha256,
        tables={name: dict(counts) for name, counts in (row.tables or {}).items()},
        journal_rows=int(row.journal_rows),
    )
