"""Point-in-time restores of a real cluster: exactly the rows committed before the target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pitr_support import Source, archiving_cluster, install_for, restore_marks, scratch_dir

from pgwarden.backup.catalog import list_backups
from pgwarden.backup.errors import ChecksumMismatch, TargetNotEmpty, WalMissing
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr import restore_pitr
from pgwarden.backup.pitr_plan import RecoveryTarget, plan_restore
from pgwarden.backup.restore_points import create_restore_point, restore_points
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.wal import list_wal
from pgwarden.testing.servers import TestServer, free_port


@pytest.fixture(scope="module")
def module_dir() -> Iterator[Path]:
    """Yield a directory the server's user may enter."""
    with scratch_dir("pgwarden-pitr-") as path:
        yield path


@pytest.fixture(scope="module")
def source(pg_server: TestServer, module_dir: Path) -> Iterator[Source]:
    """A cluster with a base backup, then markers 1-4, each in its own WAL segment."""
    storage = LocalStorage(module_dir / "storage")
    with archiving_cluster(module_dir, storage, install_for(pg_server)) as source:
        source.sql("INSERT INTO marks VALUES (0)")
        create_base_backup(source.url, storage)
        for number in (1, 2):
            source.mark(number)
        source.sql("SELECT pg_create_restore_point('after-two')")
        for number in (3, 4):
            source.mark(number)
        source.wait_archived()
        yield source


def restored_ids(source: Source, target: RecoveryTarget, where: Path) -> list[int]:
    ids, restored = restore_marks(source, target, where)
    assert restored.backup_id
    return ids


def test_restore_to_a_time_between_two_markers(source: Source, module_dir: Path) -> None:
    _, after_two, _ = source.marks[1]
    ids = restored_ids(source, RecoveryTarget(time=after_two), module_dir / "by-time")
    assert ids == [0, 1, 2]


def test_restore_to_an_lsn(source: Source, module_dir: Path) -> None:
    _, _, after_one = source.marks[0]
    ids = restored_ids(source, RecoveryTarget(lsn=after_one), module_dir / "by-lsn")
    assert ids == [0, 1]


def test_restore_to_a_named_restore_point(source: Source, module_dir: Path) -> None:
    ids = restored_ids(source, RecoveryTarget(name="after-two"), module_dir / "by-name")
    assert ids == [0, 1, 2]


def test_restore_to_the_latest(source: Source, module_dir: Path) -> None:
    ids = restored_ids(source, RecoveryTarget(), module_dir / "latest")
    assert ids == [0, 1, 2, 3, 4]


def test_the_base_backup_is_in_the_catalogue(source: Source) -> None:
    kinds = {entry.kind for entry in list_backups(source.storage) if entry.complete}
    assert "physical" in kinds


def test_a_missing_segment_refuses_the_restore_naming_it(source: Source, module_dir: Path) -> None:
    items = [i for i in list_wal(source.storage) if i.wal.kind == "segment"]
    victim = items[-2]  # after the base backup, before the last marker
    kept = source.storage.read_bytes(victim.key)
    source.storage.delete(victim.key)
    try:
        with pytest.raises(WalMissing, match=victim.name):
            restore_pitr(source.storage, module_dir / "gap", RecoveryTarget(), port=free_port())
        assert not (module_dir / "gap").exists()
    finally:
        source.storage.write_bytes(victim.key, kept)


def test_a_non_empty_directory_is_refused(source: Source, module_dir: Path) -> None:
    target = module_dir / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(TargetNotEmpty, match="not empty"):
        restore_pitr(source.storage, target, RecoveryTarget(), port=free_port())
    assert (target / "keep.txt").read_text() == "mine"


def test_a_damaged_segment_is_caught_by_its_checksum_not_replayed(
    source: Source, module_dir: Path
) -> None:
    import zstandard

    items = [i for i in list_wal(source.storage) if i.wal.kind == "segment"]
    victim = items[-2]
    kept = source.storage.read_bytes(victim.key)
    plain = bytearray(zstandard.ZstdDecompressor().decompress(kept, max_output_size=1 << 30))
    plain[len(plain) // 3] ^= 0x40
    source.storage.write_bytes(victim.key, zstandard.ZstdCompressor().compress(bytes(plain)))
    try:
        with pytest.raises(ChecksumMismatch, match=victim.name):
            restore_pitr(source.storage, module_dir / "damaged", RecoveryTarget(), port=free_port())
    finally:
        source.storage.write_bytes(victim.key, kept)


def test_a_recorded_restore_point_starts_from_the_base_backup_before_it(
    source: Source, module_dir: Path
) -> None:
    # Last in this module: it adds a marker and base backups to the shared cluster.
    middle = create_base_backup(source.url, source.storage)
    engine = source.engine()
    with engine.connect() as conn:
        point = create_restore_point(conn, source.storage, "mid-point")
    engine.dispose()
    source.mark(5)
    newest = create_base_backup(source.url, source.storage)
    source.wait_archived()
    assert [p.lsn for p in restore_points(source.storage, name="mid-point")] == [point.lsn]
    target = RecoveryTarget(name="mid-point")
    assert plan_restore(source.storage, target).backup.id == middle.id != newest.id
    ids, restored = restore_marks(source, target, module_dir / "by-recorded-name")
    assert restored.backup_id == middle.id and ids == [0, 1, 2, 3, 4]
