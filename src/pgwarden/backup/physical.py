"""Physical base backups: pg_basebackup streamed into storage, the start of every PITR.

One base backup lives under ``<cluster>/physical/<id>/``::

    started.json               written first: the backup exists, incomplete
    base.tar.zst[.enc]         pg_basebackup's tar of the data directory (no WAL in it:
                               the WAL archive supplies it), with its backup_manifest
    backup_manifest            the same manifest, for incremental backups and restores
    manifest.json              written last: timeline, start and stop LSN, sizes, SHA-256

The tar is read as it streams past, once, for its ``backup_label`` and
``backup_manifest``; nothing is staged on local disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pgwarden.backup._pgtools import connect, engine_for, server_version
from pgwarden.backup._tar import TarScanner
from pgwarden.backup.catalog import BackupEntry
from pgwarden.backup.crypto import BackupKeyring, encrypt_stream
from pgwarden.backup.errors import (
    BackupNotFound,
    BaseBackupFailed,
    ChecksumMismatch,
    ManifestInvalid,
)
from pgwarden.backup.manifest import (
    MANIFEST,
    PINNED,
    STARTED,
    backup_time,
    check_backup_id,
    new_backup_id,
    started_record,
    storage_name,
)
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER, _zstd, decrypted
from pgwarden.backup.wal.names import format_lsn, parse_lsn
from pgwarden.db.binaries import find_binary
from pgwarden.db.clients import StderrTail, client_args, first_error, spawn

__all__ = [
    "PHYSICAL",
    "BaseBackup",
    "create_base_backup",
    "list_base_backups",
    "physical_entries",
    "read_base_backup",
    "server_facts",
]

log = logging.getLogger("pgwarden.backup")

PHYSICAL = "physical"
TAR = "base.tar.zst"
BACKUP_MANIFEST = "backup_manifest"
_FORMAT = 1
_KEY = re.compile(
    rf"(?P<cluster>[^/]+)/{PHYSICAL}/(?P<id>\d{{8}}T\d{{6}}Z-[0-9a-f]{{4,16}})/(?P<rest>.+)"
)
_LABEL_START = re.compile(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) ")
_LABEL_TLI = re.compile(r"START TIMELINE: (\d+)")


@dataclass(frozen=True, slots=True)
class BaseBackup:
    """What ``manifest.json`` of a base backup records."""

    id: str
    cluster: str
    system_identifier: str
    server_version: str
    major: int
    timeline: int
    start_lsn: str
    stop_lsn: str
    segment_size: int
    started_at: datetime
    ended_at: datetime
    size: int
    sha256: str
    plain_size: int
    key_id: str | None
    incremental_from: str | None = None

    @property
    def prefix(self) -> str:
        """Return the backup's storage prefix, ending in ``/``."""
        return f"{storage_name(self.cluster)}/{PHYSICAL}/{self.id}/"

    @property
    def tar_key(self) -> str:
        """Return the key of the stored tar."""
        return self.prefix + TAR + (".enc" if self.key_id else "")

    def to_json(self) -> bytes:
        """Return the manifest as JSON."""
        data: dict[str, Any] = {"format": _FORMAT, "kind": PHYSICAL, **asdict(self)}
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        return json.dumps(data, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, backup_id: str) -> BaseBackup:
        """Parse and check a manifest read from storage (untrusted)."""
        try:
            data = json.loads(raw)
            if data.pop("format") != _FORMAT or data.pop("kind") != PHYSICAL:
                raise ValueError("not a physical backup manifest of a known format")
            data["started_at"] = datetime.fromisoformat(data["started_at"])
            data["ended_at"] = datetime.fromisoformat(data["ended_at"])
            backup = cls(**data)
            checks = [
                backup.id == backup_id,
                re.fullmatch(r"\d{1,20}", backup.system_identifier),
                isinstance(backup.timeline, int) and backup.timeline >= 1,
                isinstance(backup.major, int) and 9 < backup.major < 100,
                re.fullmatch(r"[0-9a-f]{64}", backup.sha256),
                backup.segment_size > 0 and backup.segment_size & (backup.segment_size - 1) == 0,
                backup.incremental_from is None or check_backup_id(backup.incremental_from),
            ]
            parse_lsn(backup.start_lsn)
            parse_lsn(backup.stop_lsn)
            if not all(checks):
                raise ValueError("a field has a value it cannot have")
        except Exception as exc:
            raise ManifestInvalid(
                f"the manifest of base backup {backup_id} is not valid: {exc}.",
                hint="The backup cannot be used; restore from another one.",
            ) from None
        return backup


def server_facts(url: str) -> dict[str, Any]:
    """Return the server's major and version, system identifier and WAL segment size."""
    engine = engine_for(url, application_name="pgwarden base backup")
    try:
        with connect(engine) as conn:
            major, version = server_version(conn)
            system_id = conn.execute(
                sa.text("SELECT system_identifier FROM pg_control_system()")
            ).scalar_one()
            segment_size = conn.execute(
                sa.text("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "major": major,
        "server_version": version,
        "system_identifier": str(system_id),
        "segment_size": int(segment_size),
    }


def create_base_backup(
    url: str,
    storage: Storage,
    *,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    incremental_from: str | None = None,
    level: int = 3,
) -> BaseBackup:
    """Take a base backup of the server at ``url`` with pg_basebackup, into ``storage``.

    WAL is not in it: the server must be archiving (`pgwarden pitr setup`), and
    pg_basebackup waits until the WAL the backup needs is archived. ``incremental_from``
    names an earlier base backup to take an incremental one against (PostgreSQL 17+,
    ``summarize_wal = on``).
    """
    facts = server_facts(url)
    started_at = datetime.now(UTC)
    backup_id = new_backup_id(started_at)
    prefix = f"{storage_name(cluster)}/{PHYSICAL}/{backup_id}/"
    storage.write_bytes(prefix + STARTED, started_record(backup_id, cluster, started_at))
    binary = find_binary("pg_basebackup", min_major=facts["major"])
    args = client_args(url, application_name="pgwarden base backup")
    command = [
        str(binary.path), "--dbname", args.dbname, "--pgdata=-", "--format=tar",
        "--wal-method=none", "--checkpoint=fast", "--no-password",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pgwarden-incr-") as scratch:
        if incremental_from is not None:
            parent = read_base_backup(storage, incremental_from, cluster=cluster)
            previous = Path(scratch) / BACKUP_MANIFEST
            previous.write_bytes(storage.read_bytes(parent.prefix + BACKUP_MANIFEST))
            command.append(f"--incremental={previous}")
        backup = _stream(
            command, args.env, storage, prefix, keyring, level, facts, backup_id, cluster
        )
        backup = BaseBackup(
            **{**asdict(backup), "started_at": started_at, "incremental_from": incremental_from}
        )
    storage.write_bytes(prefix + MANIFEST, backup.to_json())
    log.info("base backup %s of %s complete", backup_id, cluster)
    return backup


def _stream(
    command: list[str],
    env: dict[str, str],
    storage: Storage,
    prefix: str,
    keyring: BackupKeyring | None,
    level: int,
    facts: dict[str, Any],
    backup_id: str,
    cluster: str,
) -> BaseBackup:
    process = spawn(command, env, stdout=subprocess.PIPE)
    stderr = StderrTail(process.stderr)
    scanner = TarScanner({"backup_label", "backup_manifest"})
    plain = hashlib.sha256()
    plain_size = 0

    def compressed() -> Iterator[bytes]:
        nonlocal plain_size
        assert process.stdout is not None
        compressor = _zstd().ZstdCompressor(level=level, threads=-1).compressobj()
        while chunk := process.stdout.read(1024 * 1024):
            scanner.feed(chunk)
            plain.update(chunk)
            plain_size += len(chunk)
            if out := compressor.compress(chunk):
                yield out
        yield compressor.flush()

    stored = hashlib.sha256()

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            stored.update(chunk)
            yield chunk

    chunks = compressed()
    key = prefix + TAR
    if keyring is not None:
        chunks = encrypt_stream(chunks, keyring)
        key += ".enc"
    try:
        info = storage.write(key, hashed(chunks))
    finally:
        returncode = process.wait()
    if returncode != 0:
        storage.delete(key)
        message = first_error(stderr.text(), program="pg_basebackup")
        raise BaseBackupFailed(
            f"pg_basebackup failed: {message}",
            hint="Check that the role may replicate (REPLICATION, a pg_hba.conf line for "
            "replication) and that WAL archiving works (`pgwarden pitr check`).",
        )
    label = scanner.captured.get("backup_label", b"").decode("utf-8", "replace")
    start = _LABEL_START.search(label)
    timeline = _LABEL_TLI.search(label)
    try:
        ranges = json.loads(scanner.captured["backup_manifest"])["WAL-Ranges"]
        stop = max((parse_lsn(r["End-LSN"]) for r in ranges), default=0)
    except (KeyError, ValueError, TypeError):
        stop = 0
    if start is None or timeline is None or not stop:
        raise BaseBackupFailed(
            "pg_basebackup's tar has no readable backup_label or backup_manifest.",
            hint="Use pg_basebackup 13 or newer, without --no-manifest.",
        )
    storage.write_bytes(prefix + BACKUP_MANIFEST, scanner.captured["backup_manifest"])
    return BaseBackup(
        id=backup_id,
        cluster=cluster,
        system_identifier=facts["system_identifier"],
        server_version=facts["server_version"],
        major=facts["major"],
        timeline=int(timeline[1]),
        start_lsn=start[1],
        stop_lsn=format_lsn(stop),
        segment_size=facts["segment_size"],
        started_at=datetime.now(UTC),
        ended_at=datetime.now(UTC),
        size=info.size,
        sha256=stored.hexdigest(),
        plain_size=plain_size,
        key_id=keyring.primary if keyring is not None else None,
    )


def read_base_backup(
    storage: Storage, backup_id: str, *, cluster: str = DEFAULT_CLUSTER
) -> BaseBackup:
    """Return the manifest of the complete base backup ``backup_id``."""
    prefix = f"{storage_name(cluster)}/{PHYSICAL}/{check_backup_id(backup_id)}/"
    if not storage.exists(prefix + MANIFEST):
        raise BackupNotFound(
            f"there is no complete base backup {backup_id} of {cluster!r} in {storage.url}.",
            hint="List them with `pgwarden backup list`.",
        )
    return BaseBackup.from_json(storage.read_bytes(prefix + MANIFEST), backup_id=backup_id)


def list_base_backups(storage: Storage, *, cluster: str = DEFAULT_CLUSTER) -> list[BaseBackup]:
    """Return the complete, readable base backups of ``cluster``, oldest first."""
    found = []
    for entry in physical_entries(storage, cluster=cluster):
        if entry.complete and entry.problem is None:
            found.append(read_base_backup(storage, entry.id, cluster=cluster))
    found.sort(key=lambda b: (b.ended_at, b.id))
    return found


def physical_entries(storage: Storage, *, cluster: str | None = None) -> list[BackupEntry]:
    """Return the base backups in ``storage`` as catalogue entries, newest first."""
    prefix = f"{storage_name(cluster)}/{PHYSICAL}/" if cluster else ""
    groups: dict[tuple[str, str], list[Any]] = {}
    for info in storage.list(prefix):
        match = _KEY.fullmatch(info.key)
        if match is not None:
            groups.setdefault((match["cluster"], match["id"]), []).append(info)
    entries = []
    for (segment, backup_id), objects in groups.items():
        names = {info.key.rsplit("/", 1)[1] for info in objects}
        backup = problem = None
        if MANIFEST in names:
            try:
                backup = read_base_backup(storage, backup_id, cluster=segment)
            except ManifestInvalid as exc:
                problem = exc
        entries.append(
            BackupEntry(
                id=backup_id,
                database=backup.cluster if backup else segment,
                prefix=f"{segment}/{PHYSICAL}/{backup_id}/",
                complete=backup is not None,
                started_at=backup.started_at if backup else backup_time(backup_id),
                ended_at=backup.ended_at if backup else None,
                size=sum(info.size for info in objects),
                objects=len(objects),
                pinned=PINNED in names,
                kind=PHYSICAL,
                problem=problem,
                base_backup=backup,
            )
        )
    entries.sort(key=lambda e: (e.started_at, e.id), reverse=True)
    return entries


def base_backup_chunks(
    storage: Storage, backup: BaseBackup, *, keyring: BackupKeyring | None
) -> Iterator[bytes]:
    """Yield the plaintext tar of ``backup``, checked against its SHA-256 at the end."""
    stored = hashlib.sha256()

    def read() -> Iterator[bytes]:
        for chunk in storage.read_chunks(backup.tar_key):
            stored.update(chunk)
            yield chunk

    chunks: Iterator[bytes] = read()
    if backup.key_id is not None:
        chunks = decrypted(chunks, keyring, f"base backup {backup.id}")
    decompressor = _zstd().ZstdDecompressor().decompressobj()
    for chunk in chunks:
        if out := decompressor.decompress(chunk):
            yield out
    if stored.hexdigest() != backup.sha256:
        raise ChecksumMismatch(
            f"the stored tar of base backup {backup.id} does not match its SHA-256.",
            hint="Restore from another base backup.",
        )
