"""pgwarden's own compression: zstd streams beside pg_dump's archives, old backups too.

pg_dump writes its archive uncompressed and pgwarden stores it as a zstd stream; the
manifest says so. A backup made before (pg_dump's gzip inside the archive, a manifest
without ``applied_by``) still restores. A zstd stream that is damaged or cut short,
even under a manifest rewritten to match it, is an integrity failure found before the
target is touched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from logical_support import (
    assert_restored_in_parallel,
    checksums,
    data_path,
    execute,
    flip_byte,
    keyring,
    truncate,
    user_tables,
)
from test_backup_hostile_names import _fingerprints as fingerprints
from test_backup_hostile_names import hostile_url  # noqa: F401  (a fixture)

from pgwarden.backup._dump import choose_layout, threads
from pgwarden.backup.catalog import find_backup
from pgwarden.backup.errors import IntegrityFailed
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import MANIFEST, Compression, Manifest
from pgwarden.backup.restore import backup_contents, restore_backup
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.errors import UserError

pytest_plugins = ["logical_fixtures"]  # source_url, target_url, backups

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PGDMP = b"PGDMP"


def counts(url: str) -> dict[str, int]:
    """Return the rows of every user table."""
    return {table: execute(url, f"SELECT count(*) FROM {table}")[0] for table in user_tables(url)}


def manifest_path(storage: LocalStorage, backup_id: str) -> Path:
    return storage.root / find_backup(storage, backup_id).prefix / MANIFEST


def test_default_backup_is_a_zstd_stream_of_an_uncompressed_archive(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups).manifest
    assert manifest.compression == Compression("zstd", 1, "pgwarden")
    assert manifest.dump_format == "custom" and manifest.options["jobs"] == 1
    stored = manifest.files[0]
    raw = data_path(backups, manifest.id).read_bytes()
    assert raw.startswith(ZSTD_MAGIC) and stored.size == len(raw) < stored.plain_size
    assert stored.sha256 == hashlib.sha256(raw).hexdigest() != stored.plain_sha256
    data = json.loads(manifest_path(backups, manifest.id).read_bytes())
    assert data["compression"] == {"method": "zstd", "level": 1, "applied_by": "pgwarden"}

    assert any("TABLE DATA public users" in line for line in backup_contents(backups, manifest.id))
    restored = restore_backup(backups, manifest.id, target_url)
    assert restored.counted_on_load and restored.mode == "pg_restore | psql"
    assert checksums(target_url) == checksums(source_url)


def test_a_backup_made_before_pgwarden_compressed_still_restores(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups, compression="gzip").manifest
    assert manifest.compression == Compression("gzip", 6, "pg_dump")
    # As the older pgwarden wrote it: no applied_by; pg_dump's archive, compressed inside.
    path = manifest_path(backups, manifest.id)
    data = json.loads(path.read_bytes())
    del data["compression"]["applied_by"]
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    raw = data_path(backups, manifest.id).read_bytes()
    assert raw.startswith(PGDMP) and manifest.files[0].plain_sha256 == manifest.files[0].sha256

    again = Manifest.from_json(path.read_bytes())
    assert again.compression == Compression("gzip", 6, "pg_dump")
    restored = restore_backup(backups, manifest.id, target_url)
    assert restored.ok and restored.counted_on_load
    assert checksums(target_url) == checksums(source_url)


def test_large_databases_dump_and_restore_in_parallel_by_default(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    # Every database is large from 0 bytes on.
    manifest = create_backup(source_url, backups, keyring=keyring(), parallel_min_size=0).manifest
    assert manifest.dump_format == "directory" and manifest.options["jobs"] == threads()
    assert manifest.compression.by_pgwarden
    names = [f.name for f in manifest.files]
    assert "data/toc.dat.enc" in names and len(names) > 10
    assert all(f.plain_size > 0 for f in manifest.files)

    restored = restore_backup(
        backups, manifest.id, target_url, keyring=keyring(), parallel_min_size=0
    )
    # Nothing staged: each data file a named pipe, filled when pg_restore opens it; every
    # table's rows from its load, none counted after.
    assert_restored_in_parallel(restored, target_url)
    assert checksums(target_url) == checksums(source_url)

    with pytest.raises(UserError, match="one transaction runs one job, not 2"):
        restore_backup(backups, manifest.id, target_url, jobs=2, single_transaction=True)


def test_a_large_custom_format_backup_restores_in_parallel_from_the_stream(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups, keyring=keyring()).manifest
    assert manifest.dump_format == "custom"
    restored = restore_backup(
        backups, manifest.id, target_url, keyring=keyring(), parallel_min_size=0
    )
    assert_restored_in_parallel(restored, target_url)
    assert restored.large_objects == (1, 1)
    assert checksums(target_url) == checksums(source_url)


def test_single_transaction_keeps_one_job_whatever_the_size(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups).manifest
    restored = restore_backup(
        backups, manifest.id, target_url, parallel_min_size=0, single_transaction=True
    )
    assert not restored.staged and restored.mode == "pg_restore | psql"
    assert checksums(target_url) == checksums(source_url)


def _rewrite_to_match(storage: LocalStorage, backup_id: str, file: int = 0) -> None:
    """Make the manifest describe the stored bytes as they now are (an altered backup)."""
    path = manifest_path(storage, backup_id)
    data = json.loads(path.read_bytes())
    raw = (path.parent / data["files"][file]["name"]).read_bytes()
    data["files"][file].update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    data["size"] = sum(f["size"] for f in data["files"])
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (flip_byte, "damaged"),
        (truncate, "cut short"),
        (lambda path: path.write_bytes(path.read_bytes() + b"more"), "followed by other bytes"),
    ],
    ids=["changed", "cut", "extended"],
)
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bad_zstd_stream_fails_before_the_target_is_touched(
    source_url: str,
    backups: LocalStorage,
    target_url: str,
    damage: object,
    said: str,
    jobs: int,
) -> None:
    manifest = create_backup(source_url, backups).manifest
    path = data_path(backups, manifest.id)
    assert callable(damage)
    damage(path)
    with pytest.raises(IntegrityFailed, match="does not match its checksum"):
        restore_backup(backups, manifest.id, target_url, jobs=jobs)
    _rewrite_to_match(backups, manifest.id)  # now only the zstd stream itself tells

    with pytest.raises(IntegrityFailed, match=f"cannot be decompressed: its zstd stream is {said}"):
        restore_backup(backups, manifest.id, target_url, jobs=jobs)
    assert user_tables(target_url) == []
    with pytest.raises(IntegrityFailed, match=said) as raised:
        verify_backup(backups, manifest.id, target_url)
    assert raised.value.exit_code == 3


def test_auto_layout_is_parallel_only_where_the_tables_spread() -> None:
    gib = 1024**3
    many = threads()
    spread = ("directory", many) if many > 1 else ("custom", 1)
    assert choose_layout("auto", None, (4 * gib, gib), parallel_min_size=gib) == spread
    # One table holds most of the data: pg_dump's workers could not share it.
    assert choose_layout("auto", None, (4 * gib, 3 * gib), parallel_min_size=gib) == ("custom", 1)
    assert choose_layout("auto", None, (gib // 2, 1), parallel_min_size=gib) == ("custom", 1)
    assert choose_layout("auto", 3, (0, 0), parallel_min_size=gib) == ("directory", 3)
    assert choose_layout("custom", None, (4 * gib, gib), parallel_min_size=gib) == ("custom", 1)


@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_hostile_names_restore_in_parallel(
    hostile_url: str,  # noqa: F811  (the fixture imported above)
    backups: LocalStorage,
    target_url: str,
    dump_format: str,
) -> None:
    jobs = 2 if dump_format == "directory" else 1
    manifest = create_backup(hostile_url, backups, dump_format=dump_format, jobs=jobs).manifest
    expected = fingerprints(hostile_url)
    restored = restore_backup(backups, manifest.id, target_url, parallel_min_size=0)
    assert_restored_in_parallel(restored, target_url)
    assert len(restored.row_checks) == len(expected)
    assert fingerprints(target_url) == expected


def test_a_bad_file_piped_to_a_parallel_restore_loads_nothing_of_it(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    manifest = create_backup(source_url, backups, dump_format="directory", jobs=2).manifest
    largest = max(range(len(manifest.files)), key=lambda i: manifest.files[i].plain_size)
    prefix = backups.root / find_backup(backups, manifest.id).prefix
    flip_byte(prefix / manifest.files[largest].name)
    _rewrite_to_match(backups, manifest.id, largest)  # only the zstd stream tells

    with pytest.raises(IntegrityFailed, match="cannot be decompressed"):
        # No first read: the damage is found while the file is piped into the load.
        restore_backup(backups, manifest.id, target_url, precheck=False, parallel_min_size=0)
    source = counts(source_url)
    for table, rows in counts(target_url).items():
        assert rows in (0, source[table]), table  # never a table loaded in part


def test_a_backup_mostly_one_table_restores_in_one_job(
    source_url: str, backups: LocalStorage, target_url: str
) -> None:
    total = sum(counts(source_url).values())
    execute(
        source_url,
        f"INSERT INTO tags (name) SELECT 'tag ' || g FROM generate_series(1, {total + 1000}) AS g",
    )
    manifest = create_backup(source_url, backups).manifest
    restored = restore_backup(backups, manifest.id, target_url, parallel_min_size=0)
    # One table's data is one job's: a single job and one transaction, as measured faster.
    assert restored.mode == "pg_restore | psql" and restored.ok
