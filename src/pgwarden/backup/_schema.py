"""The shapes of the records a backup storage holds, checked before anything acts on them.

A storage is shared (a bucket, an NFS export) and writable by more people than the host
that restores from it, so every record read back from it is untrusted. Each is first
checked as bytes (its size, UTF-8, how deeply it nests), then validated against a strict
schema: no value is coerced to another type, every time carries its zone, sizes and
counts are whole numbers 0 or more, names are bounded, and a stored file's name is one
pgwarden writes (``data.dump``, or ``data/`` and one plain segment), so that it can
neither climb out of a directory nor name two things.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

__all__ = [
    "BACKUP_ID",
    "MAX_BYTES",
    "MAX_DEPTH",
    "LockSchema",
    "ManifestSchema",
    "VerifySchema",
    "id_time",
    "load_object",
    "parse",
]

#: A record larger than this is refused unread (a manifest of 100,000 tables is ~30 MB).
MAX_BYTES = 64 * 1024 * 1024
#: Arrays and objects nest at most this deep (a manifest nests 4 levels).
MAX_DEPTH = 16
BACKUP_ID = r"^(?P<time>\d{8}T\d{6}Z)-(?P<suffix>[0-9a-f]{4,16})$"
#: How a backup id writes its start time (UTC, to the second).
ID_TIME = "%Y%m%dT%H%M%SZ"

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_FILE_NAME = r"^data(\.dump|/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})(\.enc)?$"
_ENCRYPTED = ".enc"

M = TypeVar("M", bound=BaseModel)


def id_time(text: str) -> datetime:
    """Return the UTC time ``text`` (a backup id's first 16 characters) writes."""
    return datetime.strptime(text, ID_TIME).replace(tzinfo=UTC)


def _moment(value: datetime) -> datetime:
    if not 1970 <= value.year <= 9000:
        raise ValueError("a time between the years 1970 and 9000 is expected")
    return value.astimezone(UTC)


Moment = Annotated[AwareDatetime, AfterValidator(_moment)]
Size = Annotated[int, Field(ge=0, le=2**62)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A PostgreSQL name: NAMEDATALEN is 64 bytes in a stock build; some builds raise it.
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
Qualified = Annotated[str, StringConstraints(min_length=3, max_length=511, pattern=r"^[^\x00]+$")]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Short = Annotated[str, StringConstraints(max_length=256)]
Text = Annotated[str, StringConstraints(max_length=65536)]
Version = Annotated[str, StringConstraints(pattern=r"^\d{1,4}(\.\d{1,6})?$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
BackupId = Annotated[str, StringConstraints(pattern=BACKUP_ID)]
FileName = Annotated[str, StringConstraints(max_length=140, pattern=_FILE_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class StoredFileSchema(_Strict):
    name: FileName
    size: Size
    sha256: Sha256
    plain_size: Size
    plain_sha256: Sha256


class CompressionSchema(_Strict):
    method: Literal["zstd", "gzip", "lz4", "none"]
    level: Annotated[int, Field(ge=0, le=22)] | None = None
    # Manifests written before pgwarden compressed by itself have no such field.
    applied_by: Literal["pg_dump", "pgwarden"] = "pg_dump"

    @model_validator(mode="after")
    def _zstd_only(self) -> CompressionSchema:
        if self.applied_by == "pgwarden" and self.method != "zstd":
            raise ValueError(f"pgwarden compresses with zstd, not {self.method}")
        return self


class EncryptionSchema(_Strict):
    algorithm: Short
    key_id: KeyId


class TableSchema(_Strict):
    schema_: Name = Field(alias="schema")
    name: Name
    rows: Size | None = None
    parent: Qualified | None = None
    indexes: Annotated[list[Name], Field(max_length=100_000)] = []
    sequences: Annotated[list[Name], Field(max_length=100_000)] = []
    foreign_keys: Annotated[dict[Name, Qualified], Field(max_length=100_000)] = {}


class OptionsSchema(_Strict):
    schemas: Annotated[list[Pattern], Field(max_length=10_000)] = []
    exclude_schemas: Annotated[list[Pattern], Field(max_length=10_000)] = []
    tables: Annotated[list[Pattern], Field(max_length=10_000)] = []
    exclude_tables: Annotated[list[Pattern], Field(max_length=10_000)] = []
    section: Literal["all", "schema", "data"] = "all"
    jobs: Annotated[int, Field(ge=1, le=1024)] = 1


class ManifestSchema(_Strict):
    format: Literal[1]
    kind: Literal["logical"]
    status: Literal["complete"]
    id: BackupId
    database: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    database_url: Annotated[str, StringConstraints(max_length=4096)]
    server_version: Version
    client_version: Version
    started_at: Moment
    ended_at: Moment
    dump_format: Literal["custom", "directory"]
    compression: CompressionSchema
    encryption: EncryptionSchema | None
    files: Annotated[list[StoredFileSchema], Field(min_length=1, max_length=100_000)]
    tables: Annotated[list[TableSchema], Field(max_length=1_000_000)]
    row_counts: Literal["exact", "estimate", "none"]
    large_objects: Size | None = None
    snapshot: Short | None = None
    options: OptionsSchema = OptionsSchema()
    pgwarden_version: Short = ""
    size: Size | None = None
    duration_seconds: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ManifestSchema:
        started = id_time(self.id[:16])
        if not timedelta(0) <= self.started_at - started < timedelta(seconds=1):
            raise ValueError(f"started_at {self.started_at.isoformat()} is not the id's time")
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        _check_files(self)
        if self.size is not None and self.size != sum(f.size for f in self.files):
            raise ValueError("size is not the sum of the files' sizes")
        return self


def _check_files(manifest: ManifestSchema) -> None:
    encrypted = manifest.encryption is not None
    compressed = manifest.compression.applied_by == "pgwarden"
    suffix = _ENCRYPTED if encrypted else ""
    names = [f.name for f in manifest.files]
    if len(set(names)) != len(names):
        raise ValueError("a file is listed twice")
    for stored in manifest.files:
        if stored.name.endswith(_ENCRYPTED) != encrypted:
            state = "encrypted" if encrypted else "not encrypted"
            raise ValueError(f"file {stored.name!r} is named otherwise than a backup {state}")
        same = (stored.size, stored.sha256) == (stored.plain_size, stored.plain_sha256)
        if not encrypted and not compressed and not same:
            raise ValueError(
                f"file {stored.name!r} has two sizes or checksums, neither encrypted nor "
                "compressed by pgwarden"
            )
    if manifest.dump_format == "custom" and names != ["data.dump" + suffix]:
        raise ValueError(f"a custom-format backup holds one file, data.dump{suffix}")
    if manifest.dump_format == "directory" and (
        not all(name.startswith("data/") for name in names) or "data/toc.dat" + suffix not in names
    ):
        raise ValueError(f"a directory-format backup holds data/toc.dat{suffix} and data/ files")


class RowCheckSchema(_Strict):
    table: Qualified
    expected: Size
    actual: Size | None


class AmcheckSchema(_Strict):
    available: bool
    reason: Text | None = None
    indexes_checked: Size = 0
    failures: Annotated[list[tuple[Text, Text]], Field(max_length=1_000_000)] = []


class VerifySchema(_Strict):
    format: Literal[1]
    backup_id: BackupId
    verified_at: Moment
    ok: bool
    scratch: Literal["database", "embedded"]
    server_version: Short | None = None
    restore_seconds: Annotated[float, Field(ge=0)] | None = None
    row_checks: Annotated[list[RowCheckSchema], Field(max_length=1_000_000)] = []
    amcheck: AmcheckSchema | None = None
    error: Text | None = None


class LockSchema(_Strict):
    format: Literal[1]
    name: Short
    purpose: Short
    host: Short
    pid: Annotated[int, Field(ge=0, le=2**31)]
    process_started: Annotated[float, Field(ge=0)]
    started_at: Moment
    heartbeat_at: Moment
    expires_at: Moment
    token: Short


def _check_bytes(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        raise ValueError(f"it is {len(raw)} bytes long, more than {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text (at byte {exc.start})") from None
    # The brackets outside strings, the innermost pairs removed once per level allowed:
    # at C speed, whatever the size, and before any parser recurses into them.
    brackets = _STRING.sub(b"", raw).translate(_AS_SQUARE, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        brackets = brackets.replace(b"[]", b"")
    if brackets:
        raise ValueError(f"it nests more than {MAX_DEPTH} levels deep, or is not JSON")


def _shown(part: object) -> str:
    text = repr(part)[1:-1] if isinstance(part, str) else str(part)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: ValidationError, limit: int = 3) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(_shown(p) for p in item["loc"]) or "the record"
        message = (
            "is not of the form allowed"
            if item["type"] == "string_pattern_mismatch"
            else item["msg"]
        )
        parts.append(f"{where}: {message}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse(model: type[M], raw: bytes, *, max_bytes: int = MAX_BYTES) -> M:
    """Return ``raw`` validated as ``model``; raise ``ValueError`` saying what is wrong."""
    _check_bytes(raw, max_bytes)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None


def load_object(raw: bytes, *, max_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """Return the JSON object ``raw`` holds, checked as :func:`parse` does; else raise."""
    _check_bytes(raw, max_bytes)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"it is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    return data
