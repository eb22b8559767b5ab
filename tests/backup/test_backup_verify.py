"""Verify: a restore into a scratch database, row counts, amcheck, and the record of it."""

from __future__ import annotations

import json

import pytest
from logical_support import (
    data_path,
    execute,
    flip_byte,
    keyring,
    truncate,
)

from pgwarden.backup.catalog import find_backup, list_backups
from pgwarden.backup.errors import IntegrityFailed
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import MANIFEST, VERIFY, VerifyRecord
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup

SCRATCH = "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgwarden_verify_%'"

pytest_plugins = ["logical_fixtures"]  # backups, source_url, target_url


def test_verify_restores_into_a_scratch_database_and_records_it(
    source_url: str, backups: LocalStorage
) -> None:
    result = create_backup(source_url, backups, keyring=keyring())
    manifest_before = backups.read_bytes(result.prefix + MANIFEST)
    scratch_before = execute(source_url, SCRATCH)

    record = verify_backup(backups, result.manifest.id, source_url, keyring=keyring())

    assert record.ok and record.scratch == "database" and record.error is None
    assert record.restore_seconds is not None and record.restore_seconds > 0
    assert record.row_checks and all(check.ok for check in record.row_checks)
    assert record.amcheck is not None and record.amcheck.available
    assert record.amcheck.indexes_checked > 20 and record.amcheck.ok
    assert execute(source_url, SCRATCH) == scratch_before  # dropped again
    assert backups.read_bytes(result.prefix + MANIFEST) == manifest_before  # immutable
    stored = VerifyRecord.from_json(backups.read_bytes(result.prefix + VERIFY))
    assert stored == record
    [entry] = list_backups(backups)
    assert entry.verified_at == record.verified_at


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "wrong key"])
def test_verify_catches_damage_and_records_the_failure(
    damage: str, source_url: str, backups: LocalStorage
) -> None:
    result = create_backup(source_url, backups, keyring=keyring())
    path = data_path(backups, result.manifest.id)
    ring = keyring()
    if damage == "flipped byte":
        flip_byte(path, 200)
    elif damage == "truncated":
        truncate(path, 0.9)
    else:
        ring = keyring(fill=b"z")
    scratch_before = execute(source_url, SCRATCH)
    with pytest.raises(IntegrityFailed) as raised:
        verify_backup(backups, result.manifest.id, source_url, keyring=ring)
    assert raised.value.exit_code == 3
    assert execute(source_url, SCRATCH) == scratch_before
    stored = json.loads(backups.read_bytes(result.prefix + VERIFY))
    assert stored["ok"] is False and raised.value.message in stored["error"]
    entry = find_backup(backups, result.manifest.id)
    assert entry.verified_at is None and entry.verification is not None


def _has_foreign_column_options(url: str) -> bool:
    """Say whether the server stores column options a stock PostgreSQL rejects."""
    query = "SELECT count(*) FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver%'"
    return bool(execute(url, query)[0])


def test_verify_in_an_embedded_scratch_cluster(source_url: str, backups: LocalStorage) -> None:
    if _has_foreign_column_options(source_url):
        pytest.skip("this server gives every column a 'pg_attver' option no stock server knows")
    manifest = create_backup(source_url, backups).manifest
    record = verify_backup(backups, manifest.id, scratch="embedded")
    assert record.ok and record.scratch == "embedded"
    assert record.server_version and record.server_version.startswith("18")
    assert record.amcheck is not None and record.amcheck.indexes_checked > 20
