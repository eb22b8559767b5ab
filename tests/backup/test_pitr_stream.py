"""WAL streamed by `pgwarden wal stream` alone restores a cluster to its latest moment."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from pitr_support import Source, install_for, restore_marks, scratch_dir

from pgwarden.backup.errors import WalConflict
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr_plan import RecoveryTarget
from pgwarden.backup.pitr_setup import check_archiving
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.wal import list_wal, push_wal
from pgwarden.backup.wal.stream import StreamStats, ensure_slot, stream_wal
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.errors import UserError
from pgwarden.testing.servers import TestServer, free_port


@pytest.fixture
def base() -> Iterator[Path]:
    """Yield a directory the server's user may enter."""
    with scratch_dir("pgwarden-stream-") as path:
        yield path


@pytest.fixture
def source(pg_server: TestServer, base: Path) -> Iterator[Source]:
    """A cluster that does not archive (archive_mode off), with a marks table."""
    server = EmbeddedServer(base / "source", port=free_port(), install_dir=install_for(pg_server))
    server.start()
    try:
        source = Source(server, LocalStorage(base / "storage"), base / "no-spool")
        source.sql("CREATE TABLE marks (id int PRIMARY KEY)")
        source.sql("INSERT INTO marks VALUES (0)")
        yield source
    finally:
        server.destroy()


class Streamer:
    """stream_wal on a thread."""

    def __init__(self, source: Source, directory: Path) -> None:
        self.url = source.url
        self.source = source
        self.stop = threading.Event()
        self.stats: StreamStats | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.stats = stream_wal(
                    self.url, source.storage, directory, stop=self.stop, partial_every=0, poll=0.05
                )
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def receiver(self, timeout: float = 60) -> psutil.Process:
        """Return the running pg_receivewal, once it streams."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.error is None, self.error
            for child in psutil.Process().children(recursive=True):
                try:
                    if child.name() == "pg_receivewal" and self.streaming():
                        return child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.1)
        raise AssertionError("pg_receivewal did not start streaming")

    def streaming(self) -> bool:
        return bool(
            self.source.sql(
                "SELECT count(*) FROM pg_stat_replication"
                " WHERE application_name = 'pgwarden wal stream' AND state = 'streaming'"
            )
        )

    def caught_up(self, timeout: float = 60) -> None:
        """Wait until pg_receivewal has flushed all the server has written."""
        self.source.sql("SELECT txid_current()")  # something to flush
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = self.source.sql(
                "SELECT count(*) FROM pg_stat_replication"
                " WHERE application_name = 'pgwarden wal stream'"
                " AND flush_lsn >= pg_current_wal_lsn()"
            )
            if behind:
                return
            time.sleep(0.05)
        raise AssertionError("pg_receivewal did not catch up")

    def finish(self) -> StreamStats:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        assert self.stats is not None
        return self.stats


def test_streamed_wal_alone_restores_to_the_latest_moment(source: Source, base: Path) -> None:
    assert source.sql("SHOW archive_mode") == "off"
    streamer = Streamer(source, base / "stream")
    receiver = streamer.receiver()
    password = sa.engine.make_url(source.url).password
    assert password and password not in " ".join(receiver.cmdline())
    create_base_backup(source.url, source.storage)
    source.sql("INSERT INTO marks VALUES (1)")
    source.sql("SELECT pg_switch_wal()")
    receiver.send_signal(signal.SIGKILL)  # a pg_receivewal that dies is started again
    streamer.receiver()
    engine = source.engine()
    with engine.connect() as conn:  # the archiving check sees the stream archive a segment
        checked = check_archiving(conn, source.storage, timeout=60)
    engine.dispose()
    assert checked.segment in {item.name for item in list_wal(source.storage)}
    source.sql("INSERT INTO marks VALUES (2)")  # stays in the segment being received
    streamer.caught_up()
    stats = streamer.finish()
    assert stats.restarts >= 1 and stats.pushed >= 2 and stats.partials == 1
    kinds = {item.wal.kind for item in list_wal(source.storage)}
    assert kinds == {"segment", "partial"}

    ids, _ = restore_marks(source, RecoveryTarget(), base / "restored", use_partial=True)
    assert ids == [0, 1, 2]


def test_a_different_segment_under_the_same_name_stops_the_stream_and_mistakes_are_refused(
    source: Source, base: Path
) -> None:
    current = source.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    assert isinstance(current, str)
    # The server's own segment, taken while it is still being written: not what it becomes.
    early = base / current
    early.write_bytes((source.server.data_dir / "pg_wal" / current).read_bytes())
    ensure_slot(source.url, "pgwarden")
    pushed = push_wal(source.storage, early)
    streamer = Streamer(source, base / "stream")
    streamer.receiver()
    source.sql("INSERT INTO marks VALUES (1)")
    source.sql("SELECT pg_switch_wal()")
    streamer.thread.join(timeout=60)
    assert isinstance(streamer.error, WalConflict)
    assert current in str(streamer.error)
    assert [item.key for item in list_wal(source.storage) if item.name == current] == [pushed.key]

    # and the other mistakes, before anything starts
    with pytest.raises(UserError, match="no replication slot 'absent'") as refused:
        stream_wal(source.url, source.storage, base / "other", slot="absent", create_slot=False)
    assert "--create-slot" in (refused.value.hint or "")
    with pytest.raises(UserError, match="slot name"):
        ensure_slot(source.url, "Bad-Name")
    assert not (base / "other").exists() or not any((base / "other").iterdir())
