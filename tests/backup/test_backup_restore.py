"""Restores: identical data, chosen tables, refusals, and damage caught before the target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from logical_support import (
    LARGE_OBJECT,
    checksums,
    data_path,
    execute,
    flip_byte,
    keyring,
    large_objects,
    sequences,
    truncate,
    user_tables,
)

from pgwarden.backup._pgrestore import RestoreCommand
from pgwarden.backup.errors import (
    ChecksumMismatch,
    IntegrityFailed,
    RestoreFailed,
    RowCountMismatch,
    TargetNotEmpty,
)
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import MANIFEST
from pgwarden.backup.restore import backup_contents, restore_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.db import clients
from pgwarden.db.binaries import Binary
from pgwarden.errors import BinaryNotFound, ConfigError, UserError
from pgwarden.testing.servers import TestServer

pytest_plugins = ["logical_fixtures"]  # backups, source_url, target_url


def test_restore_of_learnhub_is_identical(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    """jsonb, arrays, ranges, enums, partitions, sequences, triggers, RLS, a large object."""
    manifest = create_backup(source_url, backups, keyring=keyring()).manifest
    result = restore_backup(backups, manifest.id, target_url, keyring=keyring())

    assert checksums(target_url) == checksums(source_url)
    assert sequences(target_url) == sequences(source_url)
    assert large_objects(target_url) == large_objects(source_url) == [LARGE_OBJECT]
    leaves = [t for t in manifest.tables if t.rows is not None]
    assert len(result.row_checks) == len(leaves) > 20 and result.ok
    assert result.large_objects == (1, 1) and result.prechecked and not result.staged
    # the rows the server reported loading, table by table, are the rows in the tables
    assert result.counted_on_load and result.mode == "pg_restore | psql"
    assert {c.table: c.actual for c in result.row_checks} == {
        t.qualified: execute(target_url, f"SELECT count(*) FROM {t.schema}.{t.name}")[0]
        for t in leaves
    }
    policies = "SELECT count(*) FROM pg_policies WHERE tablename = 'content'"
    # tenant_isolation and public_read
    assert execute(target_url, policies) == execute(source_url, policies) == [2]
    triggers = "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
    assert execute(target_url, triggers) == execute(source_url, triggers)


def test_restore_refuses_a_target_with_tables(source_url: str, backups: LocalStorage) -> None:
    manifest = create_backup(source_url, backups).manifest
    before = checksums(source_url)
    with pytest.raises(TargetNotEmpty, match="already holds user tables") as raised:
        restore_backup(backups, manifest.id, source_url)
    assert raised.value.exit_code == 2 and "--clean" in (raised.value.hint or "")
    assert checksums(source_url) == before


def test_clean_restore_puts_the_backed_up_rows_back(target_url: str, backups: LocalStorage) -> None:
    execute(
        target_url,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 50) AS g",
    )
    manifest = create_backup(target_url, backups).manifest
    backed_up = checksums(target_url)
    execute(target_url, "DELETE FROM notes WHERE id > 10", "INSERT INTO notes (body) VALUES ('x')")
    result = restore_backup(backups, manifest.id, target_url, clean=True)
    assert checksums(target_url) == backed_up
    assert [(c.table, c.expected, c.actual) for c in result.row_checks] == [
        ("public.notes", 50, 50)
    ]


def test_clean_restore_over_partitioned_tables(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    """pg_restore --clean drops a partition's key before its parent's, which fails alone."""
    manifest = create_backup(source_url, backups).manifest
    restore_backup(backups, manifest.id, target_url)
    execute(target_url, "DELETE FROM page_views", "DELETE FROM content_tags")
    result = restore_backup(backups, manifest.id, target_url, clean=True)
    assert checksums(target_url) == checksums(source_url) and result.counted_on_load
    partitions = "SELECT count(*) FROM pg_inherits"
    assert execute(target_url, partitions) == execute(source_url, partitions)


def test_restore_of_chosen_tables_brings_indexes_and_keys(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups).manifest
    restore_backup(backups, manifest.id, target_url)
    execute(target_url, "DROP TABLE content_tags")
    with pytest.raises(TargetNotEmpty, match=r"public\.users"):
        restore_backup(backups, manifest.id, target_url, tables=["content_tags", "users"])

    result = restore_backup(backups, manifest.id, target_url, tables=["content_tags"])
    assert result.tables == ("public.content_tags",)
    assert checksums(target_url) == checksums(source_url)
    keys = (
        "SELECT conname FROM pg_constraint WHERE conrelid = 'content_tags'::regclass "
        "ORDER BY conname"
    )
    assert execute(target_url, keys) == execute(source_url, keys)
    assert len(execute(target_url, keys)) >= 3  # primary key and two foreign keys

    with pytest.raises(UserError, match="no table matching 'nope'"):
        restore_backup(backups, manifest.id, target_url, tables=["nope"])


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "wrong key"])
def test_damage_is_caught_before_the_target_is_touched(
    damage: str, source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups, keyring=keyring()).manifest
    path = data_path(backups, manifest.id)
    ring = keyring()
    if damage == "flipped byte":
        flip_byte(path)
    elif damage == "truncated":
        truncate(path)
    else:
        ring = keyring(fill=b"b")  # the same key id, another key
    with pytest.raises(IntegrityFailed) as raised:
        restore_backup(backups, manifest.id, target_url, keyring=ring)
    error = raised.value
    assert error.exit_code == 3 and error.hint
    expected = {
        "flipped byte": "does not match its checksum",  # found before the last chunk decrypts
        "truncated": "it was cut short",
        "wrong key": "encrypted with another key",
    }[damage]
    assert expected in error.message and manifest.id in error.message
    assert user_tables(target_url) == []


def test_stream_guard_rolls_back_a_file_changed_after_the_precheck(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    """Unencrypted and uncompressed, a changed byte passes pg_restore; the checksum does not."""
    manifest = create_backup(source_url, backups, compression="none").manifest
    path = data_path(backups, manifest.id)
    data = path.read_bytes()
    offset = data.index(b"learner")  # a role name in the roles table's rows
    flip_byte(path, offset)
    with pytest.raises(ChecksumMismatch, match="does not match its checksum"):
        restore_backup(backups, manifest.id, target_url)
    assert user_tables(target_url) == []
    with pytest.raises(ChecksumMismatch):  # without the first read: held back, rolled back
        restore_backup(backups, manifest.id, target_url, precheck=False)
    assert user_tables(target_url) == []


def test_rows_that_differ_from_the_manifest_are_an_integrity_failure(
    source_url: str, backups: LocalStorage, target_url: str, pg_server: TestServer
) -> None:
    result = create_backup(source_url, backups)
    key = result.prefix + MANIFEST
    data = json.loads(backups.read_bytes(key))
    users = next(t for t in data["tables"] if t["name"] == "users")
    users["rows"] += 1
    backups.write_bytes(key, json.dumps(data).encode())
    with pytest.raises(RowCountMismatch, match=r"public.users has \d+ rows") as raised:
        restore_backup(backups, result.manifest.id, target_url)
    assert raised.value.exit_code == 3
    assert raised.value.result.counted_on_load  # found from the load's own counts
    second = pg_server.create_database(template="template0")
    try:
        with pytest.raises(RowCountMismatch, match=r"public.users has \d+ rows") as raised:
            restore_backup(backups, result.manifest.id, pg_server.url(second), recount=True)
        assert not raised.value.result.counted_on_load  # and from count(*)
    finally:
        pg_server.drop_database(second)


def test_contents_and_missing_keys(source_url: str, backups: LocalStorage) -> None:
    manifest = create_backup(source_url, backups, keyring=keyring()).manifest
    lines = backup_contents(backups, manifest.id, keyring=keyring())
    assert any("TABLE DATA public users" in line for line in lines)
    with pytest.raises(ConfigError, match="key id 'k1'"):
        backup_contents(backups, manifest.id)
    with pytest.raises(UserError, match="not a backup id"):
        restore_backup(backups, "latest", source_url)


def test_a_failing_restore_changes_nothing(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups).manifest
    # A type the backup creates already exists: pg_restore fails midway, all rolls back.
    execute(target_url, "CREATE TYPE workflow_state AS ENUM ('x')")
    with pytest.raises(RestoreFailed, match="already exists") as raised:
        restore_backup(backups, manifest.id, target_url)
    assert raised.value.exit_code == 1
    assert user_tables(target_url) == []


def test_without_psql_beside_pg_restore(tmp_path: Path) -> None:
    """pg_restore then loads by itself (rows counted after), unless the server is older."""
    (tmp_path / "pg_restore").write_text("")
    binary = Binary("pg_restore", tmp_path / "pg_restore", 18, "18.1", "PATH")
    client = clients.ClientArgs(dbname="postgresql://x@127.0.0.1/db", env={})
    command = RestoreCommand(binary, 18, client, ["--format=custom"])
    assert not command.through_psql and command.mode == "pg_restore"
    with pytest.raises(BinaryNotFound, match="needs psql") as raised:
        RestoreCommand(binary, 15, client, ["--format=custom"])
    assert "client package" in (raised.value.hint or "")
