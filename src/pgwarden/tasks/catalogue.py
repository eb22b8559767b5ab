"""Record every run of a scheduled job, and every open alert, in pgwarden's catalogue.

The catalogue is two tables in the ``pgwarden`` schema of the catalogue database
(``[tasks] catalogue``; without one, each target's own database):

- ``pgwarden.task_run``: one row per attempt of a job on a target, ``running`` when it
  starts, then ``ok``, ``failed`` or ``skipped`` with its duration, what it produced
  (``detail``) or its error. An attempt whose worker died stays ``running`` until the
  job runs again under the same task id, which marks it ``lost``.
- ``pgwarden.task_incident``: one row per alert, open until it clears; at most one open
  row per target and key, so an alert is sent once per incident whatever the number
  of workers.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from pgwarden.db.engines import connect, create_engine

__all__ = [
    "Incident",
    "JobRun",
    "claim_lost_runs",
    "close_incident",
    "close_incidents",
    "engine_for",
    "finish_run",
    "heartbeat",
    "last_runs",
    "open_incident",
    "open_incidents",
    "runs",
    "start_run",
]

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.task_run (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  target text NOT NULL,
  job text NOT NULL,
  task_id text,
  worker text,
  attempt integer NOT NULL DEFAULT 0,
  scheduled_for timestamptz,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  ended_at timestamptz,
  duration_s double precision,
  status text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}',
  error text
)
""",
    """
CREATE INDEX IF NOT EXISTS task_run_target_job
ON pgwarden.task_run (target, job, started_at DESC)
""",
    "ALTER TABLE pgwarden.task_run ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz",
    """
CREATE TABLE IF NOT EXISTS pgwarden.task_incident (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  target text NOT NULL,
  key text NOT NULL,
  kind text NOT NULL,
  message text NOT NULL,
  opened_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  closed_at timestamptz
)
""",
    """
CREATE UNIQUE INDEX IF NOT EXISTS task_incident_open
ON pgwarden.task_incident (target, key)
WHERE closed_at IS NULL
""",
)

_START = text(
    """
INSERT INTO pgwarden.task_run (target, job, task_id, worker, attempt, scheduled_for, status)
VALUES (:target, :job, :task_id, :worker, :attempt, :scheduled_for, 'running')
RETURNING id
"""
)
_LOST = text(
    """
UPDATE pgwarden.task_run
SET status = 'lost',
    ended_at = clock_timestamp(),
    error = 'the worker running it died'
WHERE task_id = :task_id
  AND status = 'running'
"""
)
_HEARTBEAT = text(
    """
UPDATE pgwarden.task_run
SET heartbeat_at = clock_timestamp()
WHERE id = :id
  AND status = 'running'
"""
)
_CLAIM_LOST = text(
    """
UPDATE pgwarden.task_run
SET status = 'lost',
    ended_at = clock_timestamp(),
    error = 'its worker stopped sending heartbeats; the job was sent again'
WHERE status = 'running'
  AND task_id IS NOT NULL
  AND COALESCE(heartbeat_at, started_at) < clock_timestamp() - make_interval(secs => :silent)
RETURNING id, target, job, task_id, worker, attempt, scheduled_for, started_at, ended_at,
          duration_s, status, detail, error
"""
)
_FINISH = text(
    """
UPDATE pgwarden.task_run
SET status = :status,
    ended_at = clock_timestamp(),
    duration_s = EXTRACT(epoch FROM clock_timestamp() - started_at),
    detail = CAST(:detail AS jsonb),
    error = :error
WHERE id = :id
"""
)
_RUNS = text(
    """
SELECT id, target, job, task_id, worker, attempt, scheduled_for, started_at, ended_at,
       duration_s, status, detail, error
FROM pgwarden.task_run
WHERE (CAST(:target AS text) IS NULL OR target = :target)
  AND (CAST(:job AS text) IS NULL OR job = :job)
ORDER BY started_at DESC, id DESC
LIMIT :limit
"""
)
_LAST = text(
    """
SELECT DISTINCT ON (target, job, status)
       id, target, job, task_id, worker, attempt, scheduled_for, started_at, ended_at,
       duration_s, status, detail, error
FROM pgwarden.task_run
WHERE status IN ('ok', 'failed')
  AND (CAST(:target AS text) IS NULL OR target = :target)
ORDER BY target, job, status, started_at DESC, id DESC
"""
)
_OPEN = text(
    """
INSERT INTO pgwarden.task_incident (target, key, kind, message)
VALUES (:target, :key, :kind, :message)
ON CONFLICT (target, key) WHERE closed_at IS NULL DO NOTHING
RETURNING id, target, key, kind, message, opened_at, closed_at
"""
)
_CLOSE = text(
    """
UPDATE pgwarden.task_incident
SET closed_at = clock_timestamp()
WHERE target = :target
  AND key = ANY(:keys)
  AND closed_at IS NULL
RETURNING id, target, key, kind, message, opened_at, closed_at
"""
)
_OPEN_INCIDENTS = text(
    """
SELECT id, target, key, kind, message, opened_at, closed_at
FROM pgwarden.task_incident
WHERE closed_at IS NULL
  AND (CAST(:target AS text) IS NULL OR target = :target)
  AND (CAST(:prefix AS text) IS NULL OR key LIKE :prefix || '%')
ORDER BY opened_at, id
"""
)


@dataclass(frozen=True)
class JobRun:
    """One attempt of one job on one target, as the catalogue holds it."""

    id: int
    target: str
    job: str
    task_id: str | None
    worker: str | None
    attempt: int
    scheduled_for: dt.datetime | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_s: float | None
    status: str
    detail: dict[str, Any]
    error: str | None


@dataclass(frozen=True)
class Incident:
    """An alert: open while the problem lasts, closed when it clears."""

    id: int
    target: str
    key: str
    kind: str
    message: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None


_engines: dict[str, Engine] = {}
_ready: set[str] = set()
_mutex = threading.Lock()


def engine_for(url: str, *, pooled: bool = True) -> Engine:
    """Return this process's engine for ``url``, made on first use.

    The catalogue's is pooled (a few connections, checked before use): every job writes
    to it. A target's is not (``pooled=False``): a worker may serve hundreds of
    databases, often on one server, and an idle connection kept for each would use up
    that server's connection slots; a job connects when it runs.
    """
    key = f"{pooled}|{url}"
    with _mutex:
        engine = _engines.get(key)
        if engine is None:
            options: dict[str, Any] = (
                {"pool_size": 2, "max_overflow": 4, "pool_recycle": 600}
                if pooled
                else {"poolclass": NullPool}
            )
            engine = create_engine(url, application_name="pgwarden-tasks", **options)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled engine of this process (after a fork, or at exit)."""
    with _mutex:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


@contextmanager
def catalogue(url: str) -> Iterator[Connection]:
    """Connect to the catalogue at ``url``, creating its tables the first time."""
    with connect(engine_for(url)) as conn:
        if url not in _ready:
            with conn.begin():
                # Many workers start at once: one creates the tables, the others wait.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('pgwarden.tasks'))"))
                for statement in _DDL:
                    conn.execute(text(statement))
            _ready.add(url)
        yield conn


def start_run(
    conn: Connection,
    *,
    target: str,
    job: str,
    task_id: str | None = None,
    worker: str | None = None,
    attempt: int = 0,
    scheduled_for: dt.datetime | None = None,
) -> int:
    """Record that a job starts; mark earlier attempts of the same task that died ``lost``."""
    with conn.begin():
        if task_id is not None:
            conn.execute(_LOST, {"task_id": task_id})
        run_id: int = conn.execute(
            _START,
            {
                "target": target,
                "job": job,
                "task_id": task_id,
                "worker": worker,
                "attempt": attempt,
                "scheduled_for": scheduled_for,
            },
        ).scalar_one()
    return run_id


def heartbeat(conn: Connection, run_id: int) -> None:
    """Record that the run ``run_id`` is still alive (its worker beats while it runs)."""
    with conn.begin():
        conn.execute(_HEARTBEAT, {"id": run_id})


def claim_lost_runs(conn: Connection, *, silent_for: float) -> list[JobRun]:
    """Mark ``lost`` the running runs with no heartbeat for ``silent_for`` seconds; return them.

    One statement, so of several workers looking at once, each lost run goes to one.
    """
    with conn.begin():
        rows = conn.execute(_CLAIM_LOST, {"silent": silent_for}).all()
    return [JobRun(**row._mapping) for row in rows]


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record how a run ended: ``ok``, ``failed`` or ``skipped``, what it made, its error."""
    with conn.begin():
        conn.execute(
            _FINISH,
            {
                "id": run_id,
                "status": status,
                "detail": json.dumps(detail or {}, default=str),
                "error": error,
            },
        )


def runs(
    conn: Connection, *, target: str | None = None, job: str | None = None, limit: int = 100
) -> list[JobRun]:
    """Return the newest runs, of one target or job if given."""
    with conn.begin():
        rows = conn.execute(_RUNS, {"target": target, "job": job, "limit": limit})
        return [JobRun(**row._mapping) for row in rows]


def last_runs(conn: Connection, *, target: str | None = None) -> list[JobRun]:
    """Return the last success and the last failure of each job of each target."""
    with conn.begin():
        return [JobRun(**row._mapping) for row in conn.execute(_LAST, {"target": target})]


def open_incident(
    conn: Connection, *, target: str, key: str, kind: str, message: str
) -> Incident | None:
    """Open an incident; return it if it is new, None if it was already open."""
    with conn.begin():
        row = conn.execute(
            _OPEN, {"target": target, "key": key, "kind": kind, "message": message}
        ).first()
    return None if row is None else Incident(**row._mapping)


def close_incident(conn: Connection, *, target: str, key: str) -> Incident | None:
    """Close the open incident of ``target`` and ``key``; return it, or None if none was open."""
    closed = close_incidents(conn, target=target, keys=[key])
    return closed[0] if closed else None


def close_incidents(conn: Connection, *, target: str, keys: list[str]) -> list[Incident]:
    """Close the open incidents of ``target`` with these keys, in one statement; return them."""
    with conn.begin():
        rows = conn.execute(_CLOSE, {"target": target, "keys": keys}).all()
    return [Incident(**row._mapping) for row in rows]


def open_incidents(
    conn: Connection, *, target: str | None = None, prefix: str | None = None
) -> list[Incident]:
    """Return the open incidents, of one target and with keys starting ``prefix`` if given."""
    with conn.begin():
        rows = conn.execute(_OPEN_INCIDENTS, {"target": target, "prefix": prefix})
        return [Incident(**row._mapping) for row in rows]
