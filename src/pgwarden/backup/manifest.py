"""What a logical backup is made of in storage, and the records that describe it.

One backup lives under one prefix, ``<database>/logical/<id>/``::

    started.json          written first: the backup exists, incomplete
    data.dump[.enc]       custom format: pg_dump's one archive
    data/<file>[.enc]     directory format: pg_dump's files (toc.dat, 3021.dat.gz, ...)
    manifest.json         written last: the backup is complete
    verify.json           the last verification's result (rewritten by each verify)
    pinned.json           present while the backup is pinned (kept by expire)

A backup is **complete** once its manifest exists, and the manifest is never rewritten.
Everything under an id without a manifest is **incomplete**: still running, or left by
a crash. Ids are sortable UTC times with a random suffix, ``20261123T101500Z-3f9a``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgwarden.backup import _schema
from pgwarden.backup.errors import ManifestInvalid
from pgwarden.errors import UserError

__all__ = [
    "KIND",
    "MANIFEST",
    "PINNED",
    "STARTED",
    "VERIFY",
    "AmcheckResult",
    "Compression",
    "Manifest",
    "RowCheck",
    "StoredFile",
    "TableEntry",
    "VerifyRecord",
    "backup_prefix",
    "backup_time",
    "check_backup_id",
    "new_backup_id",
    "parse_started",
    "started_record",
    "storage_name",
]

KIND = "logical"
STARTED = "started.json"
MANIFEST = "manifest.json"
VERIFY = "verify.json"
PINNED = "pinned.json"
FORMAT = 1

_ID = re.compile(_schema.BACKUP_ID)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def new_backup_id(now: datetime | None = None) -> str:
    """Return a new backup id: the UTC start time to the second and 4 random hex digits."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime(_schema.ID_TIME)}-{secrets.token_hex(2)}"


def check_backup_id(backup_id: str) -> str:
    """Return ``backup_id`` if it has the form of one, else raise a user error."""
    if not _ID.match(backup_id):
        raise UserError(
            f"{backup_id!r} is not a backup id.",
            hint="A backup id looks like 20261123T101500Z-3f9a; list them with "
            "`pgwarden backup list`.",
        )
    return backup_id


def backup_time(backup_id: str) -> datetime:
    """Return the start time a backup id holds."""
    match = _ID.match(backup_id)
    if match is None:
        check_backup_id(backup_id)
        raise AssertionError  # pragma: no cover - check_backup_id raised
    return _schema.id_time(match["time"])


def storage_name(database: str) -> str:
    """Return the database name as one storage path segment and lock name.

    Letters, digits, ``_``, ``.`` and ``-`` stay; anything else becomes ``_``; the
    manifest keeps the real name.
    """
    name = _UNSAFE.sub("_", database)[:100] or "_"
    return "_" + name[1:] if name.startswith(".") else name


def backup_prefix(database: str, backup_id: str) -> str:
    """Return the storage prefix of one backup, ending in ``/``."""
    return f"{storage_name(database)}/{KIND}/{check_backup_id(backup_id)}/"


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One stored file: its name under the backup's prefix, its stored bytes' size and
    SHA-256, and the size and SHA-256 of the plaintext pg_dump wrote (the same, unless
    the file is encrypted or compressed by pgwarden)."""

    name: str
    size: int
    sha256: str
    plain_size: int
    plain_sha256: str


@dataclass(frozen=True, slots=True)
class Compression:
    """How the data is compressed: ``zstd``, ``gzip`` or ``none``, the level, and by whom.

    ``applied_by`` is ``pg_dump`` (inside its archive, which pg_restore reads as it is;
    every backup made before pgwarden compressed by itself) or ``pgwarden`` (pg_dump wrote
    an uncompressed archive and pgwarden compressed each stored file as a zstd stream,
    which a restore decompresses on its way to pg_restore).
    """

    method: str
    level: int | None = None
    applied_by: str = "pg_dump"

    @property
    def by_pgwarden(self) -> bool:
        """Return whether pgwarden compressed the stored files (so decompresses them)."""
        return self.applied_by == "pgwarden"

    @property
    def spec(self) -> str:
        """Return the text of ``pg_dump --compress`` (16+): ``zstd:3``, ``gzip:6``, ``none``."""
        if self.method == "none":
            return "none"
        return self.method if self.level is None else f"{self.method}:{self.level}"


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One table in a backup: its rows in the backup's snapshot, and what hangs on it.

    ``rows`` is None when rows were not counted exactly. ``parent`` names the
    partitioned table a partition belongs to. ``indexes``, ``sequences`` (owned) and
    ``foreign_keys`` (constraint name to referenced table) let a restore of chosen
    tables bring their indexes, sequences and constraints along.
    """

    schema: str
    name: str
    rows: int | None = None
    parent: str | None = None
    indexes: tuple[str, ...] = ()
    sequences: tuple[str, ...] = ()
    foreign_keys: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """Return ``schema.name``."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """Describe one complete logical backup. Written last, never changed."""

    id: str
    database: str
    database_url: str
    server_version: str
    client_version: str
    started_at: datetime
    ended_at: datetime
    dump_format: str
    compression: Compression
    key_id: str | None
    files: tuple[StoredFile, ...]
    tables: tuple[TableEntry, ...]
    row_counts: str
    large_objects: int | None = None
    snapshot: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    pgwarden_version: str = ""
    kind: str = KIND
    status: str = "complete"

    @property
    def size(self) -> int:
        """Return the stored bytes of all the backup's data files."""
        return sum(f.size for f in self.files)

    @property
    def encrypted(self) -> bool:
        """Return whether the files are encrypted."""
        return self.key_id is not None

    @property
    def duration_seconds(self) -> float:
        """Return how long the backup took."""
        return (self.ended_at - self.started_at).total_seconds()

    def table(self, qualified: str) -> TableEntry:
        """Return the table ``schema.name``."""
        for entry in self.tables:
            if entry.qualified == qualified:
                return entry
        raise KeyError(qualified)

    def to_json(self) -> bytes:
        """Return the manifest as the JSON stored in ``manifest.json``."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as the JSON object stored, in Python types."""
        data = asdict(self)
        data["started_at"] = _time(self.started_at)
        data["ended_at"] = _time(self.ended_at)
        data["size"] = self.size
        data["duration_seconds"] = round(self.duration_seconds, 3)
        data["encryption"] = (
            {"algorithm": "AES-256-GCM, pgwarden stream v1", "key_id": self.key_id}
            if self.key_id
            else None
        )
        del data["key_id"]
        return {"format": FORMAT, **data}

    @classmethod
    def from_json(cls, raw: bytes, *, backup_id: str | None = None) -> Manifest:
        """Parse and validate ``manifest.json`` (of ``backup_id``, if given).

        Raise :class:`ManifestInvalid`, naming the backup and what is wrong, if it is
        not a valid manifest of that backup.
        """
        try:
            data = _schema.parse(_schema.ManifestSchema, raw)
            if backup_id is not None and data.id != backup_id:
                raise ValueError(f"it is the manifest of backup {data.id}")
        except ValueError as exc:
            raise _invalid(backup_id, MANIFEST, str(exc)) from None
        return cls(
            id=data.id,
            database=data.database,
            database_url=data.database_url,
            server_version=data.server_version,
            client_version=data.client_version,
            started_at=data.started_at,
            ended_at=data.ended_at,
            dump_format=data.dump_format,
            compression=Compression(
                data.compression.method, data.compression.level, data.compression.applied_by
            ),
            key_id=data.encryption.key_id if data.encryption else None,
            files=tuple(StoredFile(**f.model_dump()) for f in data.files),
            tables=tuple(
                TableEntry(
                    schema=t.schema_,
                    name=t.name,
                    rows=t.rows,
                    parent=t.parent,
                    indexes=tuple(t.indexes),
                    sequences=tuple(t.sequences),
                    foreign_keys=dict(t.foreign_keys),
                )
                for t in data.tables
            ),
            row_counts=data.row_counts,
            large_objects=data.large_objects,
            snapshot=data.snapshot,
            options=data.options.model_dump(),
            pgwarden_version=data.pgwarden_version,
        )


def _invalid(backup_id: str | None, name: str, reason: str) -> ManifestInvalid:
    whose = f" of backup {backup_id}" if backup_id else ""
    return ManifestInvalid(
        f"{name}{whose} is not valid: {reason}.",
        hint="The storage holds a damaged or altered record, or one written by a newer "
        "pgwarden. Use another copy of the backup, or another backup; `pgwarden backup "
        "delete` removes this one.",
    )


@dataclass(frozen=True, slots=True)
class RowCheck:
    """One table's rows: as the manifest says, and as found after a restore."""

    table: str
    expected: int
    actual: int | None

    @property
    def ok(self) -> bool:
        """Return whether the counts agree."""
        return self.expected == self.actual


@dataclass(frozen=True, slots=True)
class AmcheckResult:
    """What amcheck found in the restored indexes, or why it could not run."""

    available: bool
    reason: str | None = None
    indexes_checked: int = 0
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Return whether no index failed its check."""
        return not self.failures


@dataclass(frozen=True, slots=True)
class VerifyRecord:
    """The result of one verification, stored as ``verify.json`` beside the manifest."""

    backup_id: str
    verified_at: datetime
    ok: bool
    scratch: str
    server_version: str | None = None
    restore_seconds: float | None = None
    row_checks: tuple[RowCheck, ...] = ()
    amcheck: AmcheckResult | None = None
    error: str | None = None

    def to_json(self) -> bytes:
        """Return the record as stored JSON."""
        data = asdict(self)
        data["verified_at"] = _time(self.verified_at)
        return json.dumps({"format": FORMAT, **data}, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, backup_id: str | None = None) -> VerifyRecord:
        """Parse and validate ``verify.json``; raise :class:`ManifestInvalid` if it is not one."""
        try:
            data = _schema.parse(_schema.VerifySchema, raw)
        except ValueError as exc:
            raise _invalid(backup_id, VERIFY, str(exc)) from None
        amcheck = data.amcheck
        return cls(
            backup_id=data.backup_id,
            verified_at=data.verified_at,
            ok=data.ok,
            scratch=data.scratch,
            server_version=data.server_version,
            restore_seconds=data.restore_seconds,
            row_checks=tuple(RowCheck(r.table, r.expected, r.actual) for r in data.row_checks),
            amcheck=AmcheckResult(
                available=amcheck.available,
                reason=amcheck.reason,
                indexes_checked=amcheck.indexes_checked,
                failures=tuple(amcheck.failures),
            )
            if amcheck
            else None,
            error=data.error,
        )


def started_record(backup_id: str, database: str, started_at: datetime, **extra: Any) -> bytes:
    """Return the JSON of ``started.json``: the backup has begun (no secret in it)."""
    data = {
        "format": FORMAT,
        "id": backup_id,
        "kind": KIND,
        "database": database,
        "started_at": _time(started_at),
        **extra,
    }
    return json.dumps(data, indent=2, sort_keys=True).encode()


def parse_started(raw: bytes) -> dict[str, Any]:
    """Return what ``started.json`` says, or an empty dict if it is unreadable."""
    try:
        return _schema.load_object(raw)
    except ValueError:
        return {}
