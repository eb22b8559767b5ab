"""Storage: the same behaviour from a local directory and from S3 (moto on loopback)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgwarden.backup.errors import (
    InvalidKey,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageUnusable,
)
from pgwarden.backup.storage import LocalStorage, S3Storage, Storage, open_storage
from pgwarden.errors import ConfigError, PgwardenError


class Boom(Exception):
    """The failure a test's data source raises midway."""


def failing(after: int, chunk: bytes = b"x" * 4096) -> Iterator[bytes]:
    """Yield ``after`` chunks, then raise."""
    for _ in range(after):
        yield chunk
    raise Boom


def test_round_trip_list_and_delete(storage: Storage) -> None:
    data = os.urandom(300_000)
    info = storage.write("base/2026/data.dump", iter([data[:1000], b"", data[1000:]]))
    storage.write_bytes("base/2026/manifest.json", b"{}")
    storage.write_bytes("base/2027/manifest.json", b"{}")
    storage.write_bytes("wal/000000010000000000000001", b"w" * 10)

    assert info.key == "base/2026/data.dump" and info.size == len(data)
    assert hashlib.sha256(storage.read_bytes("base/2026/data.dump")).digest() == (
        hashlib.sha256(data).digest()
    )
    assert b"".join(storage.read_chunks("base/2026/data.dump", 7777)) == data
    assert [o.key for o in storage.list()] == [
        "base/2026/data.dump",
        "base/2026/manifest.json",
        "base/2027/manifest.json",
        "wal/000000010000000000000001",
    ]
    assert [o.key for o in storage.list("base/2026/")] == [
        "base/2026/data.dump",
        "base/2026/manifest.json",
    ]
    assert [o.key for o in storage.list("base/202")] == [
        "base/2026/data.dump",
        "base/2026/manifest.json",
        "base/2027/manifest.json",
    ]
    assert [o.size for o in storage.list("wal/")] == [10]
    assert list(storage.list("nothing/")) == []
    assert all(o.modified.tzinfo is not None for o in storage.list())

    storage.delete("base/2026/data.dump")
    storage.delete("base/2026/data.dump")  # deleting again is no error
    assert not storage.exists("base/2026/data.dump")
    assert storage.exists("base/2026/manifest.json")
    with pytest.raises(ObjectNotFound, match=r"no object 'base/2026/data\.dump'"):
        storage.open("base/2026/data.dump")
    with pytest.raises(ObjectNotFound):
        storage.stat("base/2026/data.dump")


def test_empty_object_and_file_source(storage: Storage, tmp_path: Path) -> None:
    storage.write("empty", iter([]))
    assert storage.read_bytes("empty") == b"" and storage.stat("empty").size == 0
    source = tmp_path / "source.bin"
    source.write_bytes(b"from a file" * 1000)
    with source.open("rb") as handle:
        storage.write("from-file", handle)
    assert storage.read_bytes("from-file") == source.read_bytes()


def test_overwrite_replaces_whole_object(storage: Storage) -> None:
    storage.write_bytes("k", b"old and long content")
    storage.write_bytes("k", b"new")
    assert storage.read_bytes("k") == b"new"


def test_failed_write_leaves_no_object_and_keeps_old(storage: Storage) -> None:
    with pytest.raises(Boom):
        storage.write("fresh", failing(10))
    assert not storage.exists("fresh")
    storage.write_bytes("kept", b"previous")
    with pytest.raises(Boom):
        storage.write("kept", failing(10))
    assert storage.read_bytes("kept") == b"previous"
    assert [o.key for o in storage.list()] == ["kept"]


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", ".", "a\\b", "a\x00b"],
)
def test_traversal_and_malformed_keys_are_refused(storage: Storage, key: str) -> None:
    for operation in (
        lambda: storage.write_bytes(key, b"x"),
        lambda: storage.open(key),
        lambda: storage.stat(key),
        lambda: storage.delete(key),
        lambda: storage.create(key, b"x"),
    ):
        with pytest.raises(InvalidKey) as raised:
            operation()
        assert raised.value.exit_code == 2 and raised.value.hint
    with pytest.raises(InvalidKey):
        list(storage.list("../"))


def test_compare_and_swap(storage: Storage) -> None:
    version = storage.create("locks/a.json", b"one")
    with pytest.raises(ObjectExists):
        storage.create("locks/a.json", b"two")
    data, read_version = storage.read_versioned("locks/a.json")
    assert (data, read_version) == (b"one", version)

    newer = storage.replace("locks/a.json", b"three", version=version)
    with pytest.raises(ObjectChanged):
        storage.replace("locks/a.json", b"four", version=version)
    with pytest.raises(ObjectChanged):
        storage.delete_version("locks/a.json", version=version)
    assert storage.read_bytes("locks/a.json") == b"three"

    storage.delete_version("locks/a.json", version=newer)
    assert not storage.exists("locks/a.json")
    storage.delete_version("locks/a.json", version=newer)  # gone already: no error
    with pytest.raises(ObjectChanged):
        storage.replace("locks/a.json", b"five", version=newer)
    assert [o.key for o in storage.list()] == []


def test_copy_local_to_s3_and_back(local_storage: LocalStorage, s3_storage: S3Storage) -> None:
    data = os.urandom(2_500_000)
    local_storage.write_bytes("base/1/data", data)
    copied = local_storage.copy_to("base/1/data", s3_storage)
    assert copied.size == len(data)
    back = LocalStorage(local_storage.root.parent / "restore")
    s3_storage.copy_to("base/1/data", back, "again/data")
    assert (back.root / "again/data").read_bytes() == data


# -- local storage ----------------------------------------------------------------------


def test_local_write_is_atomic_and_leaves_no_litter(local_storage: LocalStorage) -> None:
    seen: list[list[str]] = []

    def watched() -> Iterator[bytes]:
        for _ in range(3):
            yield b"y" * 1000
            # While the write runs, the final name does not exist; only a hidden temp.
            seen.append(sorted(p.name for p in (local_storage.root / "d").iterdir()))
        raise Boom

    with pytest.raises(Boom):
        local_storage.write("d/file", watched())
    assert all(names and all(n.startswith(".pgwarden-tmp-file.") for n in names) for names in seen)
    assert local_storage.partials() == []
    assert not (local_storage.root / "d" / "file").exists()
    assert list(local_storage.list()) == []


def test_local_crash_leftovers_are_not_listed(local_storage: LocalStorage) -> None:
    local_storage.write_bytes("d/real", b"1")
    leftover = local_storage.root / "d" / ".pgwarden-tmp-other.abc"
    leftover.write_bytes(b"half")
    assert [o.key for o in local_storage.list()] == ["d/real"]
    assert local_storage.partials() == [leftover]


def test_local_delete_prunes_empty_directories(local_storage: LocalStorage) -> None:
    local_storage.write_bytes("base/20261120/a", b"1")
    local_storage.write_bytes("base/20261120/b", b"2")
    local_storage.delete("base/20261120/a")
    assert (local_storage.root / "base/20261120").is_dir()
    local_storage.delete("base/20261120/b")
    assert not (local_storage.root / "base").exists()
    assert local_storage.root.is_dir()


def test_local_file_in_the_way(local_storage: LocalStorage) -> None:
    local_storage.write_bytes("a", b"file")
    with pytest.raises(StorageUnusable, match="a file stands where a directory must be"):
        local_storage.write_bytes("a/b", b"x")


def _as_nobody(action: Callable[[], object]) -> str:
    """Return what ``action`` raised, run in a forked child as the unprivileged nobody."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, report, never return into pytest
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            action()
            report = "no error"
        except PgwardenError as exc:
            report = f"{type(exc).__name__} {exc.exit_code} {exc} | {exc.hint}"
        except BaseException as exc:
            report = f"unexpected {exc!r}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    return report


def test_local_permission_denied_is_a_user_error() -> None:
    """A directory the user may not write to (as nobody, since the tests may run as root)."""
    top = Path(tempfile.mkdtemp(prefix="pgwarden-perm-"))
    try:
        os.chmod(top, 0o755)  # noqa: S103 - nobody must reach the directory inside
        locked = top / "locked"
        locked.mkdir(mode=0o755)
        storage = LocalStorage(locked / "backups")
        if os.geteuid() == 0:
            reports = [
                _as_nobody(lambda: storage.write_bytes("x/y", b"1")),
                _as_nobody(storage.check),
            ]
        else:
            locked.chmod(0o555)
            reports = []
            for action in (lambda: storage.write_bytes("x/y", b"1"), storage.check):
                with pytest.raises(StorageUnusable) as raised:
                    action()
                error = raised.value
                reports.append(f"StorageUnusable 2 {error} | {error.hint}")
    finally:
        shutil.rmtree(top)
    for report in reports:
        assert report.startswith("StorageUnusable 2 cannot create directory"), report
        assert "Permission denied" in report and "write access" in report


# -- open_storage --------------------------------------------------------------------


def test_open_storage_urls(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert open_storage(tmp_path / "x").url == (tmp_path / "x").as_uri()  # type: ignore[attr-defined]
    local = open_storage(f"file://{tmp_path}/with%20space")
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "with space"

    s3 = open_storage(f"s3://{bucket}/a/b/?endpoint_url={s3_endpoint}&part_size=16MiB")
    assert isinstance(s3, S3Storage)
    assert (s3.url, s3.endpoint, s3.part_size) == (f"s3://{bucket}/a/b/", s3_endpoint, 16 << 20)
    s3.write_bytes("k", b"v")
    assert s3.read_bytes("k") == b"v"

    given = open_storage(f"s3://{bucket}?endpoint_url=http://ignored:1", endpoint_url=s3_endpoint)
    assert isinstance(given, S3Storage) and given.endpoint == s3_endpoint and given.prefix == ""


def test_open_storage_from_settings(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    from pgwarden.config import Settings

    class BackupSettings(Settings):
        backup_storage: str | None = None
        s3_endpoint_url: str | None = None
        s3_region: str | None = None

    with pytest.raises(ConfigError, match="PGWARDEN_BACKUP_STORAGE is not set"):
        open_storage(BackupSettings())
    settings = BackupSettings(backup_storage=f"s3://{bucket}/x", s3_endpoint_url=s3_endpoint)
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage) and storage.endpoint == s3_endpoint


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "scheme 'ftp'"),
        ("file://otherhost/x", "names a host"),
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/x?colour=blue", "unknown option 'colour'"),
        ("s3://bucket/x?part_size=lots", "not a size"),
        ("s3://bucket/x?part_size=1MiB", "part size must be between"),
        ("   ", "is empty"),
    ],
)
def test_open_storage_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        open_storage(url)
    assert raised.value.exit_code == 2


def test_open_storage_never_quotes_credentials_in_a_url() -> None:
    with pytest.raises(ConfigError) as raised:
        open_storage("s3://AKIAEXAMPLEKEY:wJalrSECRETkey@bucket/prefix")
    text = f"{raised.value} {raised.value.hint}"
    assert "wJalrSECRETkey" not in text and "AKIAEXAMPLEKEY" not in text
    assert "holds credentials" in text
