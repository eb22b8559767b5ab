"""A scratch cluster that archives WAL into a storage, and marker rows with their times."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.manifest import MANIFEST
from pgwarden.backup.physical import BaseBackup
from pgwarden.backup.pitr import RestoredCluster, restore_pitr, stop_restored
from pgwarden.backup.pitr_plan import RecoveryTarget
from pgwarden.backup.pitr_setup import archiving_plan
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal import list_wal, prepare_spool, push_wal, run_archiver
from pgwarden.backup.wal.names import segment_name
from pgwarden.db._serviceuser import service_user
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.testing.servers import free_port
from pgwarden_test_support import autocommit_value
from pgwarden_test_support import install_for as install_for  # its users import it here


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """Yield a directory outside pytest's own (kept 0700), which the server's user may enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Source:
    """A running cluster archiving into ``storage`` through a spool and an archiver."""

    server: EmbeddedServer
    storage: Storage
    spool: Path
    stop: threading.Event = field(default_factory=threading.Event)
    marks: list[tuple[int, datetime, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url()

    def engine(self, port: int | None = None) -> sa.Engine:
        url = sa.engine.make_url(self.url).set(drivername="postgresql+psycopg")
        if port is not None:
            url = url.set(port=port)
        return sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def sql(self, text: str) -> object:
        return autocommit_value(self.url, text)

    def mark(self, number: int) -> None:
        """Commit marker row ``number``; record the server's time and LSN just after."""
        self.sql(f"INSERT INTO marks VALUES ({number})")
        time.sleep(0.3)
        moment = self.sql("SELECT clock_timestamp()")
        lsn = self.sql("SELECT pg_current_wal_insert_lsn()::text")
        assert isinstance(moment, datetime) and isinstance(lsn, str)
        self.marks.append((number, moment, lsn))
        time.sleep(0.3)
        self.sql("SELECT pg_switch_wal()")

    def wait_archived(self, timeout: float = 60) -> None:
        """Switch to a new segment and wait until the one finished is in storage."""
        self.sql("SELECT pg_create_restore_point('archive check')")  # something to switch
        current = self.sql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(item.name == current for item in list_wal(self.storage)):
                return
            time.sleep(0.1)
        log = self.server.log_file.read_text(errors="replace")[-3000:]
        spool = sorted(str(p.relative_to(self.spool)) for p in self.spool.rglob("*"))
        status = sorted(p.name for p in (self.server.data_dir / "pg_wal/archive_status").iterdir())
        raise AssertionError(
            f"{current} was not archived within {timeout} s; archiver {self.errors}, "
            f"spool {spool}, "
            f"status {status}, archived {[i.name for i in list_wal(self.storage)]}; log:\n{log}"
        )


@contextmanager
def archiving_cluster(
    base: Path, storage: Storage, install_dir: Path | None, *, keyring: BackupKeyring | None = None
) -> Iterator[Source]:
    """Yield a fresh cluster of the given installation that archives into ``storage``."""
    server = EmbeddedServer(base / "source", port=free_port(), install_dir=install_dir)
    spool = base / "spool"
    prepare_spool(spool, owner=service_user())
    source = Source(server, storage, spool)
    server.start()

    def archive() -> None:
        try:
            run_archiver(
                storage, spool, stop=source.stop, data_dir=server.data_dir, keyring=keyring
            )
        except BaseException as exc:
            source.errors.append(exc)
            raise

    archiver = threading.Thread(target=archive, daemon=True)
    archiver.start()
    try:
        engine = source.engine()
        with engine.connect() as conn:
            plan = archiving_plan(conn, spool=spool, apply=True)
        engine.dispose()
        assert plan.restart_needed
        server.stop()
        server.start()
        source.sql("CREATE TABLE marks (id int PRIMARY KEY)")
        yield source
    finally:
        server.destroy()  # first: its shutdown archives the last segment through the archiver
        source.stop.set()
        archiver.join(timeout=30)


def restore_marks(
    source: Source, target: RecoveryTarget, where: Path, **options: Any
) -> tuple[list[int], RestoredCluster]:
    """Restore ``source``'s archive into ``where``; return the marks there and the restore."""
    restored = restore_pitr(source.storage, where, target, port=free_port(), timeout=300, **options)
    try:
        engine = source.engine(port=restored.port)
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM marks ORDER BY id"))]
        engine.dispose()
    finally:
        stop_restored(restored, remove=True)
    return ids, restored


def fake_segment(
    path: Path, *, system_id: int = 7_000_000_000_000_000_001, fill: bytes = b"x"
) -> Path:
    """Write a WAL-shaped file: a long page header naming ``system_id``, then filler."""
    header = (
        (0xD118).to_bytes(2, "little")  # magic
        + (0x0002).to_bytes(2, "little")  # XLP_LONG_HEADER
        + (1).to_bytes(4, "little")  # timeline
        + (3 << 24).to_bytes(8, "little")  # page address
        + bytes(8)  # rem_len, padding
        + system_id.to_bytes(8, "little")
    )
    path.write_bytes(header + fill * (1024 * 1024) + os.urandom(64))
    return path


def fake_base_backup(
    storage: Storage,
    backup_id: str,
    start: int,
    stop: int,
    ended: datetime,
    *,
    incremental_from: str | None = None,
) -> BaseBackup:
    """Record a complete base backup of segments ``start`` to ``stop`` (a manifest only)."""
    backup = BaseBackup(
        id=backup_id, cluster="main", system_identifier="7000000000000000001",
        server_version="18.1", major=18, timeline=1, start_lsn=f"0/{start:X}000028",
        stop_lsn=f"0/{stop:X}000100", segment_size=16 * 1024 * 1024, started_at=ended,
        ended_at=ended, size=1, sha256="0" * 64, plain_size=1, key_id=None,
        incremental_from=incremental_from,
    )  # fmt: skip
    storage.write_bytes(backup.prefix + MANIFEST, backup.to_json())
    return backup


def archive_fakes(storage: Storage, directory: Path, numbers: range) -> None:
    """Archive fake segments ``numbers`` of timeline 1."""
    for number in numbers:
        name = segment_name(1, number)
        push_wal(storage, fake_segment(directory / name, fill=bytes([number])))
