"""Prove, on a schedule, that the archive restores: a restore drill to a random recent moment.

:func:`run_drill` writes two marker rows into the database (``pgwarden.pitr_drill``),
one before and one after a moment chosen at random between them, waits until their WAL
is archived, restores the cluster to that moment into a scratch data directory, and
checks that the first marker is there and the second is not, and that amcheck finds
every B-tree index of the database sound. The result, with the time the restore took
(the RTO measured), is recorded in storage under ``<cluster>/drills/``; the scratch
directory is removed.
"""

from __future__ import annotations

import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pgwarden.backup._pgtools import connect, engine_for
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.manifest import storage_name
from pgwarden.backup.pitr import restore_pitr, stop_restored
from pgwarden.backup.pitr_plan import RecoveryTarget
from pgwarden.backup.pitr_setup import check_archiving
from pgwarden.backup.pitr_status import DRILLS, DrillRecord
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER
from pgwarden.errors import PgwardenError

__all__ = ["run_drill"]

_PREPARE = [
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
    CREATE TABLE IF NOT EXISTS pgwarden.pitr_drill (
        drill text NOT NULL,
        marker text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (drill, marker)
    )
    """,
]
_MARK = sa.text("INSERT INTO pgwarden.pitr_drill (drill, marker) VALUES (:drill, :marker)")
_MARKERS = sa.text("SELECT marker FROM pgwarden.pitr_drill WHERE drill = :drill ORDER BY marker")
_INDEXES = """
    SELECT c.oid
    FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indexrelid
    JOIN pg_am AS a ON a.oid = c.relam
    WHERE a.amname = 'btree'
      AND c.relpersistence = 'p'
      AND i.indisvalid
"""


def _now(conn: sa.Connection) -> datetime:
    value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value


def run_drill(
    url: str,
    storage: Storage,
    *,
    scratch: Path,
    port: int,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    gap: float = 1.0,
    timeout: float = 3600,
) -> DrillRecord:
    """Restore ``cluster`` to a random moment between two fresh markers, prove it, record it."""
    drill = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)
    started = datetime.now(UTC)
    engine = engine_for(url, application_name="pgwarden pitr drill")
    try:
        with connect(engine) as conn:
            conn.execute(sa.text("SET lock_timeout = '10s'"))
            for statement in _PREPARE:
                conn.execute(sa.text(statement))
            conn.execute(_MARK, {"drill": drill, "marker": "before"})
            conn.commit()
            low = _now(conn)
            time.sleep(gap)
            high = _now(conn)
            conn.commit()
            moment = low + timedelta(seconds=random.uniform(0, (high - low).total_seconds()))  # noqa: S311
            time.sleep(0.05)
            conn.execute(_MARK, {"drill": drill, "marker": "after"})
            conn.commit()
        with connect(engine.execution_options(isolation_level="AUTOCOMMIT")) as conn:
            check_archiving(conn, storage, cluster=cluster, timeout=min(timeout, 300))
    finally:
        engine.dispose()
    data_dir = scratch / f"drill-{drill}"
    ok, detail, seconds, backup_id, wal_files = False, "", 0.0, "", 0
    try:
        restored = restore_pitr(
            storage, data_dir, RecoveryTarget(time=moment), port=port, cluster=cluster,
            keyring=keyring, timeout=timeout,
        )  # fmt: skip
        seconds, backup_id, wal_files = restored.seconds, restored.backup_id, restored.wal_files
        try:
            ok, detail = _prove(url, port, drill)
        finally:
            stop_restored(restored, remove=True)
    except PgwardenError as exc:
        detail = exc.message
    record = DrillRecord(drill, started, moment, seconds, ok, backup_id, wal_files, detail)
    storage.write_bytes(f"{storage_name(cluster)}/{DRILLS}{drill}.json", record.to_json())
    return record


def _prove(url: str, port: int, drill: str) -> tuple[bool, str]:
    restored = make_url(url).set(host="127.0.0.1", port=port)
    engine = engine_for(restored, application_name="pgwarden pitr drill")
    try:
        with connect(engine.execution_options(isolation_level="AUTOCOMMIT")) as conn:
            markers = list(conn.execute(_MARKERS, {"drill": drill}).scalars())
            if markers != ["before"]:
                return False, f"the restored database holds the markers {markers}, not ['before']"
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS amcheck"))
            indexes = list(conn.execute(sa.text(_INDEXES)).scalars())
            for oid in indexes:
                conn.execute(sa.text("SELECT bt_index_check(:oid)"), {"oid": oid})
    except sa.exc.DBAPIError as exc:
        return False, f"checking the restored database failed: {str(exc.orig).strip()[:500]}"
    finally:
        engine.dispose()
    return (
        True,
        f"marker before the moment present, the one after absent; {len(indexes)} indexes sound",
    )
