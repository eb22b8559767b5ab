"""The catalogue: incomplete backups, a killed backup, locks, pins, delete and expire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from logical_support import execute
from sqlalchemy.engine import make_url

from pgwarden.backup.catalog import (
    delete_backup,
    expire_backups,
    find_backup,
    list_backups,
    pin_backup,
    unpin_backup,
)
from pgwarden.backup.errors import LockHeld
from pgwarden.backup.lock import Lock, read_lock
from pgwarden.backup.logical import create_backup
from pgwarden.backup.retention import RetentionPolicy
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.cli.main import cli
from pgwarden.errors import UserError

_CLI = [sys.executable, "-c", "from pgwarden.cli.main import main; main()"]

pytest_plugins = ["logical_fixtures"]  # backups, source_url, target_url


def _wait(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _waiting_dumps(url: str) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'pgwarden-pg_dump' AND wait_event_type = 'Lock'"
    )
    return int(execute(url, query)[0])


def test_a_killed_backup_is_incomplete_and_the_next_one_takes_over(
    source_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "backups")
    database = make_url(source_url).database
    assert database is not None
    blocker = sa.create_engine(source_url.replace("postgresql://", "postgresql+psycopg://"))
    with blocker.connect() as conn:
        # pg_dump will wait for this lock: the backup is then midway, deterministically.
        conn.execute(sa.text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        args = ["--database-url", source_url, "backup", "create", "--storage", str(storage.root)]
        proc = subprocess.Popen([*_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        logical = storage.root / database / "logical"
        _wait(lambda: list(logical.glob("*/.pgwarden-tmp-data.dump*")), "the archive's write")
        _wait(lambda: _waiting_dumps(source_url), "pg_dump to wait for the lock")
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait()
        execute(
            source_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name IN ('pgwarden-pg_dump', 'pgwarden-backup')",
        )
        psutil.wait_procs(children, timeout=10)
        conn.rollback()
    blocker.dispose()

    [killed] = list_backups(storage)
    assert killed.status == "incomplete" and killed.manifest is None
    held = read_lock(storage, database)
    assert held is not None and held.pid == proc.pid  # left behind by the dead process

    runner = CliRunner()
    args = [
        "--json",
        "--database-url",
        source_url,
        "backup",
        "create",
        "--storage",
        str(storage.root),
    ]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    fresh = json.loads(done.stdout)["manifest"]["id"]
    assert read_lock(storage, database) is None  # taken over, then released
    listed = json.loads(runner.invoke(cli, ["--json", "backup", "list", "--storage",
                                            str(storage.root)]).stdout)  # fmt: skip
    assert [(b["id"], b["status"]) for b in listed] == [
        (fresh, "complete"),
        (killed.id, "incomplete"),
    ]

    expire = ["--json", "backup", "expire", "--storage", str(storage.root), "--database",
              database, "--incomplete-grace", "0"]  # fmt: skip
    report = runner.invoke(cli, expire)
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["removed"] == [killed.id]
    assert not (storage.root / killed.prefix).exists()  # the partial file went too
    assert [b.id for b in list_backups(storage)] == [fresh]


def test_a_held_lock_stops_backup_and_expire(source_url: str, backups: LocalStorage) -> None:
    database = make_url(source_url).database
    assert database is not None
    with Lock(backups, database, purpose="backup"):
        with pytest.raises(LockHeld, match=f"backup by pid {os.getpid()}") as raised:
            create_backup(source_url, backups)
        assert raised.value.exit_code == 4
        with pytest.raises(LockHeld):
            expire_backups(backups, database)
    assert expire_backups(backups, database).decisions == ()


def test_pins_delete_and_expire(source_url: str, backups: LocalStorage) -> None:
    database = make_url(source_url).database
    assert database is not None
    ids = [create_backup(source_url, backups).manifest.id for _ in range(4)]
    oldest, verified, plain, newest = ids
    verify_backup(backups, verified, source_url)
    pin_backup(backups, oldest, reason="before the migration")
    assert find_backup(backups, oldest).pinned

    policy = RetentionPolicy(daily=1, weekly=0, monthly=0, min_count=1)
    dry = expire_backups(backups, database, policy=policy, dry_run=True)
    why = {d.backup.id: d.reasons for d in dry.decisions}
    assert dry.removed == [plain]
    assert "pinned" in why[oldest] and "newest verified" in why[verified]
    assert "newest complete" in why[newest] and why[plain] == ("kept by no rule",)
    assert len(list_backups(backups)) == 4  # a dry run removes nothing

    report = expire_backups(backups, database, policy=policy)
    assert report.removed == [plain]
    assert [b.id for b in list_backups(backups)] == [newest, verified, oldest]

    with pytest.raises(UserError, match="newest complete backup"):
        delete_backup(backups, newest)
    with pytest.raises(UserError, match="is pinned"):
        delete_backup(backups, oldest)
    unpin_backup(backups, oldest)
    planned = delete_backup(backups, oldest, dry_run=True)
    assert planned.dry_run and any(key.endswith("manifest.json") for key in planned.keys)
    delete_backup(backups, oldest)
    delete_backup(backups, newest, force=True)
    assert [b.id for b in list_backups(backups)] == [verified]
