"""Incremental base backups (PostgreSQL 17+): restored through pg_combinebackup with their chain."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from pitr_support import archiving_cluster, install_for

from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr import restore_pitr, stop_restored
from pgwarden.backup.pitr_plan import RecoveryTarget, plan_restore
from pgwarden.backup.storage import LocalStorage
from pgwarden.testing.servers import TestServer, free_port


def test_restore_from_an_incremental_backup(pg_server: TestServer) -> None:
    with pg_server.admin.connect() as conn:
        major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    if major < 17:
        pytest.skip(f"incremental backups need PostgreSQL 17 or later; this is {major}")
    base = Path(tempfile.mkdtemp(prefix="pgwarden-pitr-incr-"))
    base.chmod(0o711)
    storage = LocalStorage(base / "storage")
    try:
        with archiving_cluster(base, storage, install_for(pg_server)) as source:
            source.sql("INSERT INTO marks VALUES (0)")
            full = create_base_backup(source.url, storage)
            source.mark(1)
            source.sql("SELECT pg_sleep(1)")  # the WAL summarizer catches up
            increment = create_base_backup(source.url, storage, incremental_from=full.id)
            source.mark(2)
            source.wait_archived()
            plan = plan_restore(storage, RecoveryTarget())
            assert plan.backup.id == increment.id
            restored = restore_pitr(storage, base / "restored", RecoveryTarget(), port=free_port())
            try:
                engine = source.engine(port=restored.port)
                with engine.connect() as conn:
                    ids = list(conn.execute(sa.text("SELECT id FROM marks ORDER BY id")).scalars())
                engine.dispose()
            finally:
                stop_restored(restored, remove=True)
            assert ids == [0, 1, 2]
            assert increment.incremental_from == full.id
            assert increment.size < full.size
    finally:
        shutil.rmtree(base, ignore_errors=True)
