"""A storage is untrusted: manifests validated whole, paths checked, links refused.

Each test spoils a copy of one storage holding a real custom-format and a real
directory-format backup of a small database, and checks that pgwarden refuses with a
clear error, writes nothing outside its staging directory, and lists the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from logical_support import user_tables
from untrusted_support import (
    Made,
    Sentinel,
    clean_end,
    copy_storage,
    make_backups,
    manifest_data,
    manifest_path,
    run,
    write_manifest,
)

from pgwarden.backup import _archive
from pgwarden.backup.catalog import backup_info, expire_backups, find_backup, list_backups
from pgwarden.backup.errors import InvalidKey, LockHeld, ManifestInvalid
from pgwarden.backup.lock import read_lock
from pgwarden.backup.manifest import VERIFY, StoredFile
from pgwarden.backup.progress import no_progress
from pgwarden.backup.restore import restore_backup
from pgwarden.backup.retention import RetentionPolicy
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.errors import PgwardenError
from pgwarden.testing.servers import TestServer

pytest_plugins = ["logical_fixtures"]  # target_url


@pytest.fixture(scope="module")
def made(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    name = pg_server.create_database(template="template0")
    yield make_backups(pg_server.url(name), tmp_path_factory.mktemp("pristine") / "backups")
    pg_server.drop_database(name)


@pytest.fixture
def storage(made: Made, tmp_path: Path) -> LocalStorage:
    return copy_storage(made, tmp_path / "backups")


def _every_reader(
    storage: LocalStorage, backup_id: str, made: Made, target_url: str, staging: Path
) -> list[tuple[str, PgwardenError | None, bool, bool]]:
    """Run info, verify and restore (one job and two) from the library and the CLI.

    Return for each what ran, the library's error, whether it ended cleanly (no
    traceback), and whether it failed.
    """
    outcomes: list[tuple[str, PgwardenError | None, bool, bool]] = []
    calls = {
        "info": lambda: backup_info(storage, backup_id),
        "verify": lambda: verify_backup(storage, backup_id, made.url, staging_dir=staging),
        "restore": lambda: restore_backup(storage, backup_id, target_url, staging_dir=staging),
        "restore --jobs 2": lambda: restore_backup(
            storage, backup_id, target_url, jobs=2, staging_dir=staging
        ),
    }
    for what, call in calls.items():
        try:
            call()
            outcomes.append((what, None, True, False))
        except PgwardenError as exc:
            outcomes.append((what, exc, True, True))
    where, staged = str(storage.root), ["--staging-dir", str(staging)]
    for command in (
        ["backup", "info", backup_id],
        ["--database-url", made.url, "backup", "verify", backup_id],
        ["restore", backup_id, "--target-url", target_url, "--jobs", "2", *staged],
        ["restore", backup_id, "--list", *staged],
    ):
        result = run(*command, "--storage", where)
        what = " ".join(c for c in command if "://" not in c)
        outcomes.append((what, None, clean_end(result), result.exit_code != 0))
    return outcomes


@pytest.mark.parametrize(
    "name",
    [
        "data//{sentinel}",
        "data/../../../outside/sentinel",
        "data/../../sentinel",
        "{sentinel}",
        "data/sub/toc.dat",
        "data/./toc.dat",
    ],
)
def test_a_file_name_in_a_manifest_cannot_reach_outside(
    name: str, made: Made, storage: LocalStorage, target_url: str, tmp_path: Path
) -> None:
    sentinel = Sentinel.plant(tmp_path / "outside" / "sentinel")
    staging = tmp_path / "staging"
    staging.mkdir()
    data = manifest_data(storage, made.directory)
    data["files"][0]["name"] = name.format(sentinel=sentinel.path)
    write_manifest(storage, made.directory, data)

    for what, error, clean, failed in _every_reader(
        storage, made.directory, made, target_url, staging
    ):
        assert clean and failed, what
        if error is not None:
            assert isinstance(error, ManifestInvalid), (what, error)
            assert made.directory in error.message and "files.0.name" in error.message
    assert sentinel.untouched()
    assert list(staging.iterdir()) == []  # every staging directory removed again
    assert user_tables(target_url) == []
    [entry] = [e for e in list_backups(storage) if e.id == made.directory]
    assert entry.status == "unreadable"


def test_staging_checks_each_path_before_it_opens_any(
    made: Made, storage: LocalStorage, tmp_path: Path
) -> None:
    """Past the manifest's schema, staging itself writes nowhere but its own directory."""
    sentinel = Sentinel.plant(tmp_path / "outside" / "sentinel")
    entry = find_backup(storage, made.directory)
    assert entry.manifest is not None
    staging = tmp_path / "staging"
    for name in ("data/../../outside/sentinel", f"data/{'x/' * 2}sentinel", "data/.."):
        first = entry.manifest.files[0]
        bad = StoredFile(name, first.size, first.sha256, first.plain_size, first.plain_sha256)
        files = (*entry.manifest.files, bad)  # the bad one last: nothing before it opened
        manifest = dataclasses.replace(entry.manifest, files=files)
        staging.mkdir()
        with pytest.raises((ManifestInvalid, InvalidKey)):
            _archive.stage(storage, manifest, entry.prefix, None, staging, no_progress)
        assert list(staging.iterdir()) == []
        staging.rmdir()
    assert sentinel.untouched()


@pytest.mark.parametrize("link", ["file", "directory"])
def test_symbolic_links_in_the_storage_lead_nowhere(
    link: str, made: Made, storage: LocalStorage, target_url: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    sentinel = Sentinel.plant(outside / "sentinel")
    backup_id = made.custom if link == "file" else made.directory
    prefix = storage.root / find_backup(storage, backup_id).prefix
    if link == "file":  # the archive is a link to a file elsewhere
        (prefix / "data.dump").unlink()
        (prefix / "data.dump").symlink_to(sentinel.path)
    else:  # the backup's data directory is a link to a directory elsewhere
        for stored in (prefix / "data").iterdir():
            stored.unlink()
        (prefix / "data").rmdir()
        (prefix / "data").symlink_to(outside, target_is_directory=True)
    staging = tmp_path / "staging"
    staging.mkdir()

    for what, _, clean, failed in _every_reader(storage, backup_id, made, target_url, staging):
        assert clean, what
        assert failed == ("info" not in what), what
    assert sentinel.untouched()
    assert all("sentinel" not in info.key for info in storage.list())
    name = find_backup(storage, backup_id).prefix + ("data.dump" if link == "file" else "data/x")
    with pytest.raises(InvalidKey, match="symbolic link"):
        storage.write_bytes(name, b"")
    assert sentinel.untouched()
    assert user_tables(target_url) == []


def test_naive_timestamps_make_one_backup_unreadable_not_the_catalogue(
    made: Made, storage: LocalStorage, target_url: str
) -> None:
    data = manifest_data(storage, made.custom)
    data["started_at"] = data["started_at"].removesuffix("+00:00")
    write_manifest(storage, made.custom, data)

    entries = {e.id: e for e in list_backups(storage)}
    assert entries[made.directory].status == "complete"
    bad = entries[made.custom]
    assert bad.status == "unreadable" and bad.problem is not None
    assert made.custom in bad.problem.message and "timezone" in bad.problem.message

    listed = run("backup", "list", "--storage", str(storage.root))
    assert listed.exit_code == 0, listed.output
    assert made.directory in listed.stdout and "unreadable" in listed.stdout
    assert "timezone" in listed.stdout
    as_json = json.loads(run("--json", "backup", "list", "--storage", str(storage.root)).stdout)
    problems = {e["id"]: e["problem"] for e in as_json}
    assert problems[made.directory] is None and "timezone" in problems[made.custom]

    database = entries[made.directory].database
    report = expire_backups(storage, database, policy=RetentionPolicy(min_count=0, daily=0))
    kept = {d.backup.id: (d.keep, d.reasons) for d in report.decisions}
    assert kept[made.custom][0] and "not valid" in kept[made.custom][1][0]
    expired = run("backup", "expire", "--database", database, "--min-count", "0",
                  "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0",
                  "--storage", str(storage.root))  # fmt: skip
    assert expired.exit_code == 0, expired.output
    assert find_backup(storage, made.custom).problem is not None  # still there

    where = ["--storage", str(storage.root)]
    restore = ["restore", made.custom, "--target-url", target_url]
    for command in (["backup", "info", made.custom], restore):
        result = run("--json", *command, *where)
        assert result.exit_code == 3, result.output
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "ManifestInvalid" and made.custom in error["message"]
    assert user_tables(target_url) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
        b'{"format": 1, "id": "\xff\xfe"}',
        b"",
        b"null",
        b'{"format": 1e999}',
    ],
    ids=["deep array", "deep object", "bad UTF-8", "empty", "null", "huge number"],
)
def test_a_manifest_that_is_not_one_is_a_clear_error(
    raw: bytes, made: Made, storage: LocalStorage
) -> None:
    manifest_path(storage, made.custom).write_bytes(raw)
    entry = {e.id: e for e in list_backups(storage)}[made.custom]
    assert entry.status == "unreadable"
    with pytest.raises(ManifestInvalid, match=made.custom):
        backup_info(storage, made.custom)
    result = run("backup", "info", made.custom, "--storage", str(storage.root))
    assert result.exit_code == 3 and clean_end(result), result.output
    listed = run("backup", "list", "--storage", str(storage.root))
    assert listed.exit_code == 0 and made.directory in listed.stdout, listed.output


def test_a_bad_verify_record_or_lock_is_ignored_or_refused_cleanly(
    made: Made, storage: LocalStorage
) -> None:
    prefix = find_backup(storage, made.custom).prefix
    record = {"format": 1, "backup_id": made.custom, "verified_at": "2026-11-01T00:00:00",
              "ok": True, "scratch": "database"}  # fmt: skip
    storage.write_bytes(prefix + VERIFY, json.dumps(record).encode())
    entry = find_backup(storage, made.custom)
    assert entry.status == "complete" and entry.verification is None
    database = entry.database
    expire_backups(storage, database, dry_run=True)  # no TypeError comparing times

    lock = {"format": 1, "name": database, "purpose": "backup", "host": "elsewhere",
            "pid": 1, "process_started": 0.0, "started_at": "2026-11-01T00:00:00",
            "heartbeat_at": "2026-11-01T00:00:00", "expires_at": "2026-11-01T00:00:00",
            "token": "x"}  # fmt: skip
    storage.write_bytes(f"locks/{database}.json", json.dumps(lock).encode())
    with pytest.raises(LockHeld, match="not a pgwarden lock record"):
        read_lock(storage, database)


def test_local_storage_refuses_a_key_through_a_link_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    sentinel = Sentinel.plant(outside / "sentinel")
    storage = LocalStorage(tmp_path / "root")
    storage.write_bytes("inside/x", b"x")
    os.symlink(outside, storage.root / "out")
    os.symlink(sentinel.path, storage.root / "inside" / "link")
    os.symlink(storage.root / "inside" / "x", storage.root / "inside" / "alias")
    assert [i.key for i in storage.list()] == ["inside/alias", "inside/x"]
    assert storage.read_bytes("inside/alias") == b"x"  # a link that stays inside is fine
    for key in ("out/sentinel", "inside/link", "out/new"):
        with pytest.raises(InvalidKey, match="symbolic link"):
            storage.write_bytes(key, b"")
        with pytest.raises(InvalidKey, match="symbolic link"):
            storage.read_bytes(key)
    assert list(storage.list("out/")) == []
    assert sentinel.untouched()


def test_names_with_brackets_print_as_they_are(made: Made, storage: LocalStorage) -> None:
    data = manifest_data(storage, made.custom)
    data["database"] = "[/x] [bold]db"
    data["tables"][0]["name"] = "[/]"
    write_manifest(storage, made.custom, data)
    where = ["--storage", str(storage.root)]
    shown = run("backup", "info", made.custom, *where)
    assert shown.exit_code == 0 and clean_end(shown), shown.output
    assert "[/x] [bold]db" in shown.stdout and "[/]" in shown.stdout
    for bad in ("[/x]", "[bold]20261123T101500Z-3f9a"):
        refused = run("backup", "info", bad, *where)
        assert refused.exit_code == 2 and clean_end(refused), refused.output
        assert bad in refused.output
