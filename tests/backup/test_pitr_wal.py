"""WAL archiving: push and fetch through real storage, idempotent, refusing conflicts."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from pathlib import Path

import pytest
from pitr_support import fake_segment

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import ChecksumMismatch, WalConflict, WalMissing
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal import (
    fetch_wal,
    list_wal,
    parse_lsn,
    parse_wal_name,
    prepare_spool,
    push_wal,
    run_archiver,
)
from pgwarden.backup.wal.archive import push_partial
from pgwarden.backup.wal.names import format_lsn, segment_name
from pgwarden.errors import UserError

SEGMENT = "000000010000000000000003"


@pytest.fixture
def keyring() -> BackupKeyring:
    return BackupKeyring.from_setting("k1:" + base64.b64encode(os.urandom(32)).decode())


@pytest.mark.parametrize("encrypted", [False, True])
def test_push_then_fetch_gives_the_same_bytes(
    storage: Storage, tmp_path: Path, keyring: BackupKeyring, encrypted: bool
) -> None:
    ring = keyring if encrypted else None
    source = fake_segment(tmp_path / SEGMENT)
    first = push_wal(storage, source, keyring=ring)
    assert not first.already_archived
    assert first.stored_size < first.size  # compressed
    again = push_wal(storage, source, keyring=ring)
    assert again.already_archived and again.key == first.key
    fetch_wal(storage, SEGMENT, tmp_path / "back", keyring=ring)
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    [item] = list_wal(storage)
    assert item.name == SEGMENT and item.encrypted is encrypted


def test_a_partial_segment_is_replaced_as_it_grows_and_served_only_when_asked(
    storage: Storage, tmp_path: Path, keyring: BackupKeyring
) -> None:
    early = fake_segment(tmp_path / f"{SEGMENT}.partial", fill=b"a")
    first = push_partial(storage, early, keyring=keyring)
    assert push_partial(storage, early, keyring=keyring).already_archived
    grown = fake_segment(tmp_path / f"{SEGMENT}.partial", fill=b"b")
    second = push_partial(storage, grown, keyring=keyring)
    assert second.key != first.key
    assert [item.key for item in list_wal(storage)] == [second.key]  # the older one went
    with pytest.raises(WalMissing, match=SEGMENT):
        fetch_wal(storage, SEGMENT, tmp_path / "back", keyring=keyring)
    fetch_wal(storage, SEGMENT, tmp_path / "back", keyring=keyring, partial=True)
    assert (tmp_path / "back").read_bytes() == grown.read_bytes()
    # Once the whole segment is archived, it is what a fetch gives.
    whole = push_wal(storage, fake_segment(tmp_path / SEGMENT, fill=b"c"), keyring=keyring)
    fetched = fetch_wal(storage, SEGMENT, tmp_path / "back", keyring=keyring, partial=True)
    assert fetched.key == whole.key
    with pytest.raises(UserError, match="not a partial segment"):
        push_partial(storage, tmp_path / SEGMENT, keyring=keyring)


def test_a_different_file_under_an_archived_name_is_refused(
    storage: Storage, tmp_path: Path
) -> None:
    source = fake_segment(tmp_path / SEGMENT)
    push_wal(storage, source)
    other = fake_segment(tmp_path / "other", fill=b"y")
    with pytest.raises(WalConflict, match="different"):
        push_wal(storage, other, name=SEGMENT)
    fetch_wal(storage, SEGMENT, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    assert len(list_wal(storage)) == 1


def test_a_segment_of_another_cluster_is_refused(storage: Storage, tmp_path: Path) -> None:
    push_wal(storage, fake_segment(tmp_path / SEGMENT))
    stranger = fake_segment(tmp_path / "000000010000000000000004", system_id=42)
    with pytest.raises(WalConflict, match="system identifier 42"):
        push_wal(storage, stranger)
    assert [i.name for i in list_wal(storage)] == [SEGMENT]


def test_a_damaged_archived_file_is_caught_by_its_checksum(
    storage: Storage, tmp_path: Path
) -> None:
    import zstandard

    source = fake_segment(tmp_path / SEGMENT)
    result = push_wal(storage, source)
    changed = bytearray(source.read_bytes())
    changed[5000] ^= 1  # a flipped bit, recompressed: only the checksum can tell
    storage.write_bytes(result.key, zstandard.ZstdCompressor().compress(bytes(changed)))
    with pytest.raises(ChecksumMismatch, match="damaged"):
        fetch_wal(storage, SEGMENT, tmp_path / "back")
    assert not (tmp_path / "back").exists()
    storage.write_bytes(result.key, b"not zstd at all")
    with pytest.raises(ChecksumMismatch):
        fetch_wal(storage, SEGMENT, tmp_path / "back")


def test_a_missing_file_is_reported_as_missing(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(WalMissing, match=SEGMENT):
        fetch_wal(storage, SEGMENT, tmp_path / "back")


@pytest.mark.parametrize(
    "name",
    ["../000000010000000000000003", "00000001000000000000000g", "00000000.history",
     "000000010000000000000003/x", "", "000000010000000000000003.partial.x"],
)  # fmt: skip
def test_names_that_are_not_wal_names_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="not a WAL file name"):
        parse_wal_name(name)


def test_keys_in_storage_that_are_not_archive_keys_are_ignored(
    storage: Storage, tmp_path: Path
) -> None:
    push_wal(storage, fake_segment(tmp_path / SEGMENT))
    storage.write_bytes("main/wal/0000000100000000/x-" + "0" * 64 + ".zst", b"")
    storage.write_bytes("main/wal/0000000100000000/evil-" + "0" * 64 + ".zst", b"x")
    storage.write_bytes(
        "main/wal/0000000200000000/000000010000000000000005-" + "0" * 64 + ".zst", b"x"
    )
    assert [i.name for i in list_wal(storage)] == [SEGMENT]


def test_lsn_and_segment_arithmetic() -> None:
    assert parse_lsn("0/3000060") == 0x3000060
    assert format_lsn(parse_lsn("1A/FF000028")) == "1A/FF000028"
    assert segment_name(1, 0x1A * 256 + 0xFF) == "000000010000001A000000FF"
    assert parse_wal_name("000000010000001A000000FF").number() == 0x1A * 256 + 0xFF
    assert parse_wal_name("00000002.history").timeline == 2
    with pytest.raises(UserError, match="not an LSN"):
        parse_lsn("0/xyz")


def test_the_archive_script_returns_once_the_archiver_pushed(
    storage: Storage, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    script = prepare_spool(spool)
    stop = threading.Event()
    worker = threading.Thread(target=run_archiver, args=(storage, spool), kwargs={"stop": stop})
    worker.start()
    try:
        names = [segment_name(1, n) for n in range(3, 7)]
        for name in names:
            source = fake_segment(tmp_path / name)
            done = subprocess.run([str(script), str(source), name], capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
        # The same segment again succeeds; a different one under its name fails, loudly.
        again = subprocess.run([str(script), str(tmp_path / names[0]), names[0]], timeout=60)
        assert again.returncode == 0
        other = fake_segment(tmp_path / "other", fill=b"z")
        refused = subprocess.run(
            [str(script), str(other), names[1]], capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 1 and "different" in refused.stderr
    finally:
        stop.set()
        worker.join()
    assert [i.name for i in list_wal(storage)] == names


@pytest.mark.parametrize("name", ['a"b', "a$(id)", "a`id`", "a'b", "a%f"])
def test_a_spool_path_the_shell_would_read_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="shell"):
        prepare_spool(tmp_path / name)
    assert not (tmp_path / name).exists()
