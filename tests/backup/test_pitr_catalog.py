"""Physical base backups in the catalogue: info, pin (with their WAL), delete, expire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pitr_support import archive_fakes, fake_base_backup

from pgwarden.backup.catalog import delete_backup, expire_backups, find_backup
from pgwarden.backup.pitr_retention import expire_wal
from pgwarden.backup.retention import RetentionPolicy
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.wal import list_wal
from pgwarden.cli.main import cli
from pgwarden.errors import UserError

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
FULL, INCR, NEWEST = "20261201T000000Z-aaaa", "20261202T000000Z-bbbb", "20261206T000000Z-cccc"
NOTHING = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0, min_count=0)


def run(storage: LocalStorage, *args: str) -> object:
    return CliRunner().invoke(cli, [*args, "--storage", str(storage.root)], catch_exceptions=False)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "store")
    archive_fakes(storage, tmp_path, range(1, 11))
    fake_base_backup(storage, FULL, 2, 3, NOW - timedelta(days=6))
    fake_base_backup(storage, INCR, 5, 5, NOW - timedelta(days=5), incremental_from=FULL)
    fake_base_backup(storage, NEWEST, 8, 8, NOW - timedelta(days=1))
    return storage


def test_info_shows_a_base_backup(storage: LocalStorage) -> None:
    result = run(storage, "--json", "backup", "info", INCR)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    shown = json.loads(result.output)  # type: ignore[attr-defined]
    assert shown["kind"] == "physical"
    assert shown["base_backup"]["start_lsn"] == "0/5000028"
    assert shown["base_backup"]["incremental_from"] == FULL
    text = run(storage, "backup", "info", INCR).output  # type: ignore[attr-defined]
    assert "0/5000028 to 0/5000100" in text


def test_a_pinned_base_backup_and_its_wal_outlive_expiry(storage: LocalStorage) -> None:
    assert run(storage, "backup", "pin", FULL, "--reason", "audit").exit_code == 0  # type: ignore[attr-defined]
    assert find_backup(storage, FULL).pinned
    report = expire_backups(storage, "main", policy=NOTHING, now=NOW)
    assert report.removed == [INCR] and set(report.kept) == {FULL, NEWEST}
    expire_wal(storage, window=timedelta(days=2), now=NOW)
    assert [item.wal.number() for item in list_wal(storage)] == [2, 3, 8, 9, 10]


def test_expire_keeps_the_base_of_a_kept_incremental(storage: LocalStorage) -> None:
    assert run(storage, "backup", "pin", INCR).exit_code == 0  # type: ignore[attr-defined]
    report = expire_backups(storage, "main", policy=NOTHING, now=NOW)
    assert report.removed == []
    kept = {d.backup.id: d.reasons for d in report.decisions}
    assert any(INCR in reason for reason in kept[FULL])


def test_deleting_the_base_of_an_incremental_is_refused_unless_forced(
    storage: LocalStorage,
) -> None:
    result = run(storage, "backup", "delete", FULL)
    assert result.exit_code == 2 and INCR in result.output  # type: ignore[attr-defined]
    assert find_backup(storage, FULL).complete
    with pytest.raises(UserError, match=INCR):
        delete_backup(storage, FULL)
    report = delete_backup(storage, FULL, force=True)
    assert report.keys and not list(storage.list(report.backup.prefix))
    assert delete_backup(storage, INCR).keys  # nothing builds on it
