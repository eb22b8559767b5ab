"""Push WAL files into storage and fetch them back: compressed, checksummed, encrypted.

One cluster's archive lives under ``<cluster>/wal/``::

    cluster.json                                   the system identifier, written once
    0000000100000000/000000010000000000000003-<sha256>.zst[.enc]
    history/00000002.history-<sha256>.zst[.enc]

The SHA-256 in each key is that of the WAL file as PostgreSQL wrote it, so a listing
says what is archived without reading it: pushing the same file twice succeeds, a
different file under an existing name is refused (:class:`WalConflict`) and never
overwritten, and a fetched file is checked against it before PostgreSQL may replay it.
Segments of another cluster (another system identifier) are refused too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pgwarden.backup.crypto import BackupKeyring, decrypt_stream, encrypt_stream
from pgwarden.backup.errors import (
    ChecksumMismatch,
    ObjectExists,
    WalConflict,
    WalMissing,
)
from pgwarden.backup.manifest import storage_name
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.names import WalName, parse_wal_name
from pgwarden.errors import ConfigError, UserError

__all__ = [
    "DEFAULT_CLUSTER",
    "ArchivedWal",
    "PushResult",
    "fetch_wal",
    "find_wal",
    "list_wal",
    "push_partial",
    "push_wal",
    "read_wal",
    "wal_prefix",
    "write_atomically",
]

log = logging.getLogger("pgwarden.backup.wal")

DEFAULT_CLUSTER = "main"
CLUSTER_FILE = "cluster.json"
_MAX_WAL_BYTES = 1024 * 1024 * 1024  # PostgreSQL's largest segment size
_KEY = re.compile(
    r"(?:(?P<dir>[0-9A-F]{16})|history)/(?P<name>[0-9A-F.a-z]{8,48})-"
    r"(?P<sha>[0-9a-f]{64})\.zst(?P<enc>\.enc)?"
)
# Archives whose cluster record this process has read: one check per archiver, not per file.
_KNOWN_CLUSTERS: set[tuple[str, str, int]] = set()
_SYSID_OFFSET = 24  # XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, pad, sysid


def _zstd() -> ModuleType:
    import zstandard  # a base dependency; imported when WAL is first compressed

    return zstandard


def wal_prefix(cluster: str = DEFAULT_CLUSTER) -> str:
    """Return the storage prefix of ``cluster``'s WAL archive, ending in ``/``."""
    return f"{storage_name(cluster)}/wal/"


def _folder(name: WalName) -> str:
    return "history" if name.kind == "history" else name.name[:16]


@dataclass(frozen=True, slots=True)
class ArchivedWal:
    """One WAL file in the archive, as its key describes it."""

    wal: WalName
    key: str
    sha256: str
    encrypted: bool
    size: int

    @property
    def name(self) -> str:
        """Return the WAL file name."""
        return self.wal.name


@dataclass(frozen=True, slots=True)
class PushResult:
    """A WAL file pushed: where it went, whether it was there already, and its sizes."""

    name: str
    key: str
    already_archived: bool
    size: int
    stored_size: int


def _parse_key(prefix: str, key: str, size: int) -> ArchivedWal | None:
    """Return what ``key`` describes, or None if it is not a well-formed archive key."""
    if not key.startswith(prefix):
        return None
    match = _KEY.fullmatch(key[len(prefix) :])
    if match is None:
        return None
    try:
        wal = parse_wal_name(match["name"])
    except UserError:
        return None
    if _folder(wal) != (match["dir"] or "history"):
        return None
    return ArchivedWal(wal, key, match["sha"], bool(match["enc"]), size)


def list_wal(
    storage: Storage, *, cluster: str = DEFAULT_CLUSTER, folder: str = ""
) -> list[ArchivedWal]:
    """Return the WAL files archived for ``cluster``, ordered by timeline and position.

    Keys that are not well-formed archive keys (storage is untrusted) are skipped and
    logged, never used.
    """
    prefix = wal_prefix(cluster)
    found: list[ArchivedWal] = []
    for info in storage.list(prefix + folder):
        if info.key == prefix + CLUSTER_FILE:
            continue
        item = _parse_key(prefix, info.key, info.size)
        if item is None:
            log.warning("ignored %r in the WAL archive: not an archived WAL file", info.key)
            continue
        found.append(item)
    found.sort(key=lambda item: (item.wal, item.key))
    return found


def _archived(storage: Storage, cluster: str, wal: WalName) -> list[ArchivedWal]:
    """Return the archived copies of ``wal`` (normally one or none)."""
    folder = f"{_folder(wal)}/{wal.name}-"
    return [item for item in list_wal(storage, cluster=cluster, folder=folder) if item.wal == wal]


def _system_identifier(data: bytes, wal: WalName) -> int | None:
    """Return the system identifier in a segment's first page header, if it has one."""
    if wal.kind not in ("segment", "partial") or len(data) < _SYSID_OFFSET + 8:
        return None
    info = int.from_bytes(data[2:4], "little")
    if not info & 0x0002:  # XLP_LONG_HEADER
        return None
    return int.from_bytes(data[_SYSID_OFFSET : _SYSID_OFFSET + 8], "little")


def _check_cluster(storage: Storage, cluster: str, system_id: int | None, wal: WalName) -> None:
    """Record the archive's system identifier once; refuse a segment of another cluster."""
    if system_id is None or (storage.url, cluster, system_id) in _KNOWN_CLUSTERS:
        return
    key = wal_prefix(cluster) + CLUSTER_FILE
    record = json.dumps({"system_identifier": str(system_id)}).encode()
    try:
        storage.create(key, record)
        _KNOWN_CLUSTERS.add((storage.url, cluster, system_id))
        return
    except ObjectExists:
        pass
    try:
        known = json.loads(storage.read_bytes(key))["system_identifier"]
    except (ValueError, KeyError, TypeError):
        raise WalConflict(
            f"{key} in {storage.url} is not a valid cluster record.",
            hint="Remove it if the archive holds one cluster's WAL only.",
        ) from None
    if str(known) != str(system_id):
        raise WalConflict(
            f"WAL file {wal.name} comes from the cluster with system identifier {system_id}; "
            f"the archive {cluster!r} in {storage.url} holds the WAL of cluster {known}.",
            hint="Give each cluster its own archive name (--cluster NAME).",
        )
    _KNOWN_CLUSTERS.add((storage.url, cluster, system_id))


def push_wal(
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    level: int = 1,
) -> PushResult:
    """Archive the WAL file at ``path`` (named ``name``, else its file name).

    ``level`` is zstd's: 1, the fastest, keeps archiving ahead of a busy server; WAL
    compresses well at any level.

    Succeeds without writing if the same file is archived already; raises
    :class:`WalConflict` if a different one is, leaving it untouched.
    """
    wal, data, sha = _read_local(path, name)
    _check_cluster(storage, cluster, _system_identifier(data, wal), wal)
    existing = _archived(storage, cluster, wal)
    for item in existing:
        if item.sha256 != sha:
            raise WalConflict(
                f"the archive {cluster!r} in {storage.url} already holds a different "
                f"{wal.name} (SHA-256 {item.sha256[:16]}..., this one {sha[:16]}...); "
                "it is not overwritten.",
                hint="Another cluster archives under the same name, or this cluster was "
                "restored without a new timeline: give it its own --cluster name.",
            )
    if existing:
        item = existing[0]
        return PushResult(wal.name, item.key, True, len(data), item.size)
    return _store(storage, cluster, wal, data, sha, keyring, level)


def _read_local(path: str | os.PathLike[str], name: str | None) -> tuple[WalName, bytes, str]:
    wal = parse_wal_name(name or Path(path).name)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(
            f"cannot read the WAL file {os.fspath(path)}: {exc.strerror}.",
            hint="archive_command passes %p, the path relative to the data directory.",
        ) from None
    return wal, data, hashlib.sha256(data).hexdigest()


def push_partial(
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    level: int = 1,
) -> PushResult:
    """Archive the partial segment at ``path`` (``<segment>.partial``), replacing older copies.

    A partial segment grows while ``pg_receivewal`` streams into it, so unlike a
    segment it is replaced: the new copy is written first, then the older ones of the
    same name go. Whatever it holds is checked again by PostgreSQL's record checksums
    when it is replayed (`pgwarden wal fetch --partial`, ``restore --use-partial``).
    """
    wal, data, sha = _read_local(path, None)
    if wal.kind != "partial":
        raise UserError(f"{wal.name} is not a partial segment (<segment>.partial).")
    _check_cluster(storage, cluster, _system_identifier(data, wal), wal)
    existing = _archived(storage, cluster, wal)
    same = [item for item in existing if item.sha256 == sha]
    if same:
        return PushResult(wal.name, same[0].key, True, len(data), same[0].size)
    result = _store(storage, cluster, wal, data, sha, keyring, level)
    for item in existing:
        storage.delete(item.key)
    return result


def _store(
    storage: Storage,
    cluster: str,
    wal: WalName,
    data: bytes,
    sha: str,
    keyring: BackupKeyring | None,
    level: int,
) -> PushResult:
    compressed = _zstd().ZstdCompressor(level=level).compress(data)
    chunks: Iterator[bytes] = iter([compressed])
    suffix = ".zst"
    if keyring is not None:
        chunks = encrypt_stream(chunks, keyring)
        suffix += ".enc"
    key = f"{wal_prefix(cluster)}{_folder(wal)}/{wal.name}-{sha}{suffix}"
    info = storage.write(key, chunks)
    log.info("archived %s (%d bytes, %d stored)", wal.name, len(data), info.size)
    return PushResult(wal.name, key, False, len(data), info.size)


def find_wal(storage: Storage, name: str, *, cluster: str = DEFAULT_CLUSTER) -> ArchivedWal:
    """Return the archived copy of WAL file ``name``; raise :class:`WalMissing` if none."""
    wal = parse_wal_name(name)
    found = {item.sha256: item for item in _archived(storage, cluster, wal)}
    if not found:
        raise WalMissing(
            f"WAL file {wal.name} is not in the archive {cluster!r} in {storage.url}.",
            hint="Check archiving with `pgwarden pitr check`; a restore cannot pass a gap.",
        )
    if len(found) > 1:
        raise WalConflict(
            f"the archive {cluster!r} in {storage.url} holds {len(found)} different copies "
            f"of {wal.name}.",
            hint="Two clusters archived under one name; remove the copies that are not "
            "this cluster's.",
        )
    return next(iter(found.values()))


def decrypted(chunks: Iterator[bytes], keyring: BackupKeyring | None, what: str) -> Iterator[bytes]:
    """Return the plaintext of an encrypted stream; a :class:`ConfigError` without keys."""
    if keyring is None:
        raise ConfigError(
            f"{what} is encrypted and no keys are set.",
            hint="Set PGWARDEN_ENCRYPTION_KEYS to the keys it was written with.",
        )
    return decrypt_stream(chunks, keyring)


def read_wal(storage: Storage, item: ArchivedWal, *, keyring: BackupKeyring | None) -> bytes:
    """Return the checked content of the archived WAL file ``item``.

    Raise :class:`ChecksumMismatch` if it does not match the SHA-256 it was archived with.
    """
    chunks: Iterator[bytes] = storage.read_chunks(item.key)
    if item.encrypted:
        chunks = decrypted(chunks, keyring, f"WAL file {item.name}")
    reader = _zstd().ZstdDecompressor().decompressobj()
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in chunks:
            part = reader.decompress(chunk)
            total += len(part)
            if total > _MAX_WAL_BYTES:
                raise ValueError("larger than any WAL file")
            parts.append(part)
    except _zstd().ZstdError as exc:
        raise _corrupt(item, f"it does not decompress ({exc})") from None
    except ValueError as exc:
        raise _corrupt(item, str(exc)) from None
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise _corrupt(item, "its SHA-256 differs from the one it was archived with")
    return data


def _corrupt(item: ArchivedWal, reason: str) -> ChecksumMismatch:
    return ChecksumMismatch(
        f"archived WAL file {item.name} is damaged: {reason}; it is not replayed.",
        hint=f"Restore {item.key} from another copy of the archive, or restore to a point "
        "before it.",
    )


def fetch_wal(
    storage: Storage,
    name: str,
    destination: str | os.PathLike[str],
    *,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    partial: bool = False,
) -> ArchivedWal:
    """Fetch WAL file ``name`` into ``destination``, checked before it appears there.

    With ``partial``, a segment the archive lacks is served from its archived partial
    segment (``<name>.partial``, what `pgwarden wal stream` had received when it
    stopped), if there is one: recovery replays it to its last whole record.

    Raise :class:`WalMissing` if the archive lacks it (restore_command's "no such file")
    and :class:`ChecksumMismatch` if it is damaged.
    """
    try:
        item = find_wal(storage, name, cluster=cluster)
    except WalMissing:
        if not partial or parse_wal_name(name).kind != "segment":
            raise
        item = find_wal(storage, name + ".partial", cluster=cluster)
    data = read_wal(storage, item, keyring=keyring)
    write_atomically(Path(destination), data)
    return item


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
