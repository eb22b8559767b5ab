"""Record every import and erase as a run, with the rows it changed, so it can be undone.

A run and its journal live in the ``pgwarden`` schema of the database they changed,
written in the same transaction as the change: a failed import leaves neither data nor
journal. One journal row per changed row::

    pgwarden.import_run      id, kind (import|erase), mode, status, source, per-table counts
    pgwarden.import_journal  run_id, schema_name, table_name, action, key, previous, new_hash

``action`` is what the run did to the row: ``insert`` (``key`` names it), ``update``
(``previous`` holds the whole row before) or ``delete`` (``previous`` holds the row).
``new_hash`` is ``md5`` of the row as the run left it (its text form), which is how
:func:`pgwarden.transfer.rollback.rollback_run` tells that a row changed afterwards.
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
  tables jsonb NOT NULL DEFAULT '{}'
)
""",
    """
CREATE TABLE IF NOT EXISTS pgwarden.import_journal (
  run_id bigint NOT NULL,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  action text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
  key jsonb NOT NULL,
  previous jsonb,
  new_hash text,
  CHECK ((action = 'insert') = (previous IS NULL)),
  CHECK ((action = 'delete') = (new_hash IS NULL))
)
""",
    """
CREATE INDEX IF NOT EXISTS import_journal_run
  ON pgwarden.import_journal (run_id, schema_name, table_name, action)
""",
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

    Creating them takes a lock held to the end of the transaction, so two first runs
    do not race; once they exist, runs take no lock here and go on side by side.
    """
    if conn.execute(_JOURNAL_EXISTS).scalar_one():
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    for statement in _DDL:
        conn.exec_driver_sql(statement)


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
