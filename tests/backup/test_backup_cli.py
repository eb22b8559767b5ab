"""``pgwarden backup ...`` and ``pgwarden restore``: JSON output, exit codes, S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from logical_support import (
    checksums,
    data_path,
    key_setting,
    large_objects,
    truncate,
    user_tables,
)
from sqlalchemy.engine import make_url

from pgwarden.backup.lock import Lock
from pgwarden.backup.storage import LocalStorage, open_storage
from pgwarden.cli.main import cli

pytest_plugins = ["logical_fixtures"]  # backups, source_url, target_url


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def parsed(result: Result) -> Any:
    return json.loads(result.stdout)


def error_of(result: Result) -> dict[str, Any]:
    return parsed(result)["error"]  # type: ignore[no-any-return]


def test_round_trip_through_s3_with_an_off_site_copy(
    source_url: str,
    target_url: str,
    s3_endpoint: str,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", key_setting())
    storage = f"s3://{bucket}/pg?endpoint_url={s3_endpoint}&region=us-east-1"
    copy = tmp_path / "offsite"
    created = run("--json", "--database-url", source_url, "backup", "create", "--storage",
                  storage, "--copy-to", str(copy))  # fmt: skip
    assert created.exit_code == 0, created.output
    result = parsed(created)
    backup_id = result["manifest"]["id"]
    assert result["manifest"]["encryption"]["key_id"] == "k1"
    assert result["copied_to"] == copy.as_uri()

    listed = run("--json", "backup", "list", "--storage", storage)
    assert listed.exit_code == 0, listed.output
    [entry] = parsed(listed)
    assert (entry["id"], entry["status"], entry["encrypted"]) == (backup_id, "complete", True)
    [copied] = parsed(run("--json", "backup", "list", "--storage", str(copy)))
    assert (copied["id"], copied["status"]) == (backup_id, "complete")

    info = parsed(run("--json", "backup", "info", backup_id, "--storage", storage))
    assert info["manifest"]["database"] == make_url(source_url).database
    assert any(t["name"] == "users" for t in info["manifest"]["tables"])

    restored = run("--json", "restore", backup_id, "--storage", storage,
                   "--target-url", target_url)  # fmt: skip
    assert restored.exit_code == 0, restored.output
    report = parsed(restored)
    assert report["ok"] is True and report["row_checks"]
    assert checksums(target_url) == checksums(source_url)
    assert large_objects(target_url) == large_objects(source_url)
    assert open_storage(storage).exists(f"{entry['prefix']}manifest.json")


def test_exit_codes(
    source_url: str, target_url: str, backups: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = str(backups.root)
    made = run("--json", "--database-url", source_url, "backup-db", "--storage", where)
    assert made.exit_code == 0, made.output
    backup_id = parsed(made)["manifest"]["id"]

    missing = run("--json", "backup", "info", "20990101T000000Z-abcd", "--storage", where)
    assert missing.exit_code == 2 and error_of(missing)["type"] == "BackupNotFound"
    occupied = run("--json", "--database-url", source_url, "restore", backup_id, "--storage", where)
    assert occupied.exit_code == 2 and error_of(occupied)["type"] == "TargetNotEmpty"
    no_storage = run("--json", "--database-url", source_url, "backup", "create")
    assert no_storage.exit_code == 2 and "PGWARDEN_BACKUP_STORAGE" in error_of(no_storage)["hint"]
    no_key = run("--json", "--database-url", source_url, "backup", "create", "--storage", where,
                 "--encrypt")  # fmt: skip
    assert no_key.exit_code == 2 and error_of(no_key)["type"] == "ConfigError"

    database = make_url(source_url).database
    assert database is not None
    with Lock(backups, database, purpose="expire"):
        held = run("--json", "--database-url", source_url, "backup", "create", "--storage", where)
    assert held.exit_code == 4 and error_of(held)["type"] == "LockHeld"
    assert "expire by pid" in error_of(held)["message"]

    truncate(data_path(backups, backup_id))
    damaged = run("--json", "restore-db", backup_id, "--storage", where, "--target-url", target_url)
    assert damaged.exit_code == 3 and error_of(damaged)["type"] == "ChecksumMismatch"
    checked = run("--json", "--database-url", source_url, "backup", "verify", backup_id,
                  "--storage", where)  # fmt: skip
    assert checked.exit_code == 3 and "cut short" in error_of(checked)["message"]
    assert user_tables(target_url) == []


def test_catalogue_commands_print_json(
    source_url: str, backups: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGWARDEN_BACKUP_STORAGE", str(backups.root))
    monkeypatch.setenv("DATABASE_URL", source_url)
    first = parsed(run("--json", "backup", "create", "--table", "users"))["manifest"]["id"]
    second = parsed(run("--json", "backup", "create", "--format", "directory", "--jobs", "2"))
    second_id = second["manifest"]["id"]
    assert second["manifest"]["dump_format"] == "directory"

    contents = parsed(run("--json", "restore", first, "--list"))["contents"]
    assert any("TABLE DATA public users" in line for line in contents)
    assert parsed(run("--json", "backup", "pin", first, "--reason", "keep"))["pinned"] is True
    assert parsed(run("--json", "backup", "unpin", first))["pinned"] is False
    plan = parsed(run("--json", "backup", "expire", "--min-count", "1", "--keep-daily", "1",
                      "--dry-run"))  # fmt: skip
    assert plan["dry_run"] is True and plan["removed"] == [first]
    assert {d["id"]: d["keep"] for d in plan["decisions"]} == {second_id: True, first: False}
    refused = run("--json", "backup", "delete", second_id)
    assert refused.exit_code == 2 and "--force" in error_of(refused)["hint"]
    gone = parsed(run("--json", "backup", "delete", first))
    assert gone["id"] == first and gone["keys"]
    assert [b["id"] for b in parsed(run("--json", "backup", "list"))] == [second_id]
    text = run("backup", "list")
    assert text.exit_code == 0 and second_id in text.stdout
    info = run("backup", "info", second_id)
    assert info.exit_code == 0 and "public.users" in info.stdout
    unlocked = parsed(run("--json", "backup", "unlock"))
    assert unlocked["removed"] is None


@pytest.mark.parametrize(
    "command", ["create", "list", "info", "verify", "expire", "delete", "pin", "unpin", "unlock"]
)
def test_the_docs_cover_every_backup_command_and_option(command: str) -> None:
    import pgwarden
    from pgwarden.cli.backup import backup

    docs = Path(pgwarden.__file__).parents[2] / "docs"
    guide, reference = (docs / "backup.md").read_text(), (docs / "cli.md").read_text()
    logical = guide[guide.index("# Logical backups") :]
    assert f"`pgwarden backup {command}" in reference
    for param in backup.commands[command].params:
        for option in param.opts:
            if option.startswith("--") and option != "--help":
                assert option in logical, f"docs/backup.md does not mention {command} {option}"


def test_the_docs_cover_restore() -> None:
    import pgwarden
    from pgwarden.cli.restore import restore

    docs = Path(pgwarden.__file__).parents[2] / "docs"
    guide, reference = (docs / "backup.md").read_text(), (docs / "cli.md").read_text()
    assert "`pgwarden restore ID" in reference and "`restore-db`" in guide
    for param in restore.params:
        for option in param.opts:
            if option.startswith("--"):
                assert option in guide, f"docs/backup.md does not mention restore {option}"
