"""WAL retention: segments go only when no kept base backup needs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pitr_support import archive_fakes as archive
from pitr_support import fake_base_backup as base_backup

from pgwarden.backup.pitr_retention import expire_wal
from pgwarden.backup.storage import LocalStorage, Storage
from pgwarden.backup.wal import list_wal

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def names(storage: Storage) -> list[int]:
    return [item.wal.number() for item in list_wal(storage)]


def test_without_a_base_backup_nothing_goes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    archive(storage, tmp_path, range(1, 6))
    report = expire_wal(storage, now=NOW)
    assert report.removed == () and names(storage) == [1, 2, 3, 4, 5]


def test_segments_before_the_oldest_base_backup_go(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    archive(storage, tmp_path, range(1, 11))
    base_backup(storage, "20261201T000000Z-aaaa", 3, 4, NOW - timedelta(days=6))
    base_backup(storage, "20261206T000000Z-bbbb", 7, 7, NOW - timedelta(days=1))
    dry = expire_wal(storage, now=NOW, dry_run=True)
    assert [i.wal.number() for i in dry.removed] == [1, 2] and len(names(storage)) == 10
    expire_wal(storage, now=NOW)
    assert names(storage) == list(range(3, 11))


def test_an_old_backup_outside_the_window_keeps_only_its_own_wal(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    archive(storage, tmp_path, range(1, 11))
    base_backup(storage, "20261201T000000Z-aaaa", 3, 4, NOW - timedelta(days=6))
    base_backup(storage, "20261206T000000Z-bbbb", 7, 7, NOW - timedelta(days=1))
    report = expire_wal(storage, now=NOW, window=timedelta(days=2))
    assert report.continuous_from == "20261206T000000Z-bbbb"
    assert names(storage) == [3, 4, 7, 8, 9, 10]
