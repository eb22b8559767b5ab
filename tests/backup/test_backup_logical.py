"""Logical backups with pg_dump: what is stored, the manifest, and the dump's snapshot."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from typing import BinaryIO

import pytest
import sqlalchemy as sa
from logical_support import (
    assert_restored_in_parallel,
    checksums,
    execute,
    keyring,
    user_tables,
)
from sqlalchemy.engine import make_url

from pgwarden.backup.catalog import list_backups
from pgwarden.backup.errors import StorageError
from pgwarden.backup.logical import create_backup, resolve_compression
from pgwarden.backup.manifest import MANIFEST, STARTED, Manifest
from pgwarden.backup.restore import backup_contents, restore_backup
from pgwarden.backup.storage import LocalStorage, ObjectInfo
from pgwarden.db.binaries import find_binary
from pgwarden.errors import UserError

pytest_plugins = ["logical_fixtures"]  # backups, source_url, target_url


def test_custom_backup_is_streamed_and_described_by_its_manifest(
    source_url: str, backups: LocalStorage
) -> None:
    # The server's own password where it asks for one; any, where it trusts.
    secret = make_url(source_url).password or "s3cret-in-url"
    url = make_url(source_url).set(password=secret).render_as_string(hide_password=False)
    result = create_backup(url, backups, keyring=keyring())
    manifest = result.manifest

    prefix = f"{manifest.database}/logical/{manifest.id}/"
    assert result.prefix == prefix
    assert sorted(o.key for o in backups.list(prefix)) == [
        prefix + "data.dump.enc",
        prefix + MANIFEST,
        prefix + STARTED,
    ]
    stored = (backups.root / prefix / "data.dump.enc").read_bytes()
    [file] = manifest.files
    assert (file.size, file.sha256) == (len(stored), hashlib.sha256(stored).hexdigest())
    assert file.plain_size > 0 and file.plain_sha256 != file.sha256
    assert manifest.key_id == "k1" and stored.startswith(b"PGWCRYPT")

    raw = (backups.root / prefix / MANIFEST).read_bytes()
    assert str(secret).encode() not in raw and b"***" in raw
    assert Manifest.from_json(raw) == manifest
    data = json.loads(raw)
    assert data["status"] == "complete" and data["kind"] == "logical"
    assert data["encryption"] == {"algorithm": "AES-256-GCM, pgwarden stream v1", "key_id": "k1"}
    assert manifest.database == make_url(source_url).database
    assert manifest.server_version and manifest.client_version.startswith("18")
    assert manifest.started_at < manifest.ended_at

    dump = find_binary("pg_dump")
    assert manifest.compression == resolve_compression(dump, "auto", None)
    assert manifest.large_objects == 1
    counts = {t.qualified: t.rows for t in manifest.tables}
    assert counts["public.users"] == execute(source_url, "SELECT count(*) FROM users")[0] > 0
    views = [t for t in manifest.tables if t.parent == "public.page_views"]
    assert views and all(t.rows is not None for t in views)
    assert manifest.table("public.page_views").rows is None  # partitioned: rows in partitions
    users = manifest.table("public.users")
    assert "users_id_seq" in users.sequences and users.indexes


def test_row_counts_and_dump_share_one_snapshot(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    """Rows committed while the backup runs are in neither the counts nor the dump."""
    before = execute(source_url, "SELECT count(*) FROM tags")[0]
    blocker = sa.create_engine(source_url.replace("postgresql://", "postgresql+psycopg://"))
    results: list[object] = []
    with blocker.connect() as conn:
        conn.execute(sa.text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        worker = threading.Thread(
            target=lambda: results.append(create_backup(source_url, backups)), daemon=True
        )
        worker.start()
        _wait_for_lock_wait(source_url, "pgwarden-pg_dump")
        # The snapshot is taken, pg_dump waits for users: add rows elsewhere meanwhile.
        execute(source_url, "INSERT INTO tags (name) VALUES ('late')")
        conn.rollback()
    worker.join(60)
    blocker.dispose()
    [result] = results
    manifest = result.manifest  # type: ignore[attr-defined]
    assert manifest.table("public.tags").rows == before
    restored = restore_backup(backups, manifest.id, target_url)
    assert execute(target_url, "SELECT count(*) FROM tags")[0] == before
    assert all(check.ok for check in restored.row_checks)


def _wait_for_lock_wait(url: str, application: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
        f"'{application}' AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        if execute(url, query)[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{application} never waited for a lock")


def test_tables_and_schemas_are_chosen_by_exact_name(
    source_url: str, backups: LocalStorage
) -> None:
    result = create_backup(source_url, backups, tables=["users", "page_views"])
    names = {t.qualified for t in result.manifest.tables}
    assert "public.users" in names and "public.page_views_default" in names
    assert "public.content" not in names
    assert result.manifest.large_objects is None  # not a whole-database dump
    contents = "\n".join(backup_contents(backups, result.manifest.id))
    assert "TABLE DATA public users" in contents
    assert "TABLE DATA public page_views_default" in contents
    assert "TABLE DATA public content " not in contents

    excluded = create_backup(
        source_url, backups, exclude_tables=["audit_log", "page_views"], row_counts="estimate"
    ).manifest
    names = {t.qualified for t in excluded.tables}
    assert "public.audit_log" not in names and "public.page_views_default" not in names
    assert "public.users" in names and excluded.row_counts == "estimate"
    contents = "\n".join(backup_contents(backups, excluded.id))
    assert "TABLE DATA public audit_log" not in contents
    assert "TABLE DATA public users" in contents

    with pytest.raises(UserError, match="no table of the database matches 'nope'"):
        create_backup(source_url, backups, tables=["nope"])
    with pytest.raises(UserError, match="no schema"):
        create_backup(source_url, backups, schemas=["missing_schema"])


def test_schema_only_then_data_only(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    schema = create_backup(source_url, backups, section="schema").manifest
    data = create_backup(source_url, backups, section="data").manifest
    assert all(t.rows is None for t in schema.tables) and schema.row_counts == "none"
    assert schema.large_objects is None

    restore_backup(backups, schema.id, target_url)
    assert set(user_tables(target_url)) == set(user_tables(source_url))
    assert execute(target_url, "SELECT count(*) FROM users")[0] == 0

    restored = restore_backup(backups, data.id, target_url)
    assert restored.row_checks and all(check.ok for check in restored.row_checks)
    assert checksums(target_url) == checksums(source_url)


def test_directory_format_dumps_in_parallel_and_restores(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    result = create_backup(source_url, backups, dump_format="directory", jobs=2, keyring=keyring())
    manifest = result.manifest
    names = [f.name for f in manifest.files]
    assert "data/toc.dat.enc" in names and len(names) > 10
    assert all(name.endswith(".enc") for name in names)
    restored = restore_backup(backups, manifest.id, target_url, keyring=keyring(), jobs=2)
    assert_restored_in_parallel(restored, target_url)
    assert checksums(target_url) == checksums(source_url)

    with pytest.raises(UserError, match="directory format"):
        create_backup(source_url, backups, dump_format="custom", jobs=2)


def test_compression_follows_what_pg_dump_supports(source_url: str, backups: LocalStorage) -> None:
    dump = find_binary("pg_dump")
    auto = resolve_compression(dump, "auto", None)
    if auto.method == "zstd":
        assert resolve_compression(dump, "zstd", 7).spec == "zstd:7"
    else:
        assert auto.spec == "gzip:6"
        with pytest.raises(UserError, match="cannot compress with zstd"):
            resolve_compression(dump, "zstd", None)
    with pytest.raises(UserError, match="level is 1-9"):
        resolve_compression(dump, "gzip", 12)

    plain = create_backup(source_url, backups, compression="none").manifest
    packed = create_backup(source_url, backups, compression="gzip", compression_level=9).manifest
    assert plain.compression.spec == "none" and packed.compression.spec == "gzip:9"
    assert packed.size < plain.size / 2


class _FailingStorage(LocalStorage):
    """A local storage whose disk fills up after a few bytes of the archive."""

    def write(self, key: str, data: Iterable[bytes] | BinaryIO) -> ObjectInfo:
        if not key.endswith("data.dump"):
            return super().write(key, data)

        def failing() -> Iterable[bytes]:
            for i, chunk in enumerate(data):  # type: ignore[arg-type]
                if i == 1:
                    raise StorageError("disk full (injected)")
                yield chunk

        return super().write(key, failing())


def test_a_failed_backup_stays_incomplete(source_url: str, tmp_path: object) -> None:
    storage = _FailingStorage(tmp_path / "failing")  # type: ignore[operator]
    execute(source_url, "INSERT INTO events (name, payload) SELECT 'bulk', "
            "jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 40)) "
            "FROM generate_series(1, 5000) AS g")  # fmt: skip
    with pytest.raises(StorageError, match="injected"):
        create_backup(source_url, storage, compression="none")
    [entry] = list_backups(storage)
    assert entry.status == "incomplete" and entry.manifest is None
    assert not storage.exists(f"{entry.prefix}data.dump")
    assert execute(
        source_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgwarden-%'",
    ) == [0]
