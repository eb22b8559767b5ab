"""Read and write a pgwarden bundle: table data files and the manifest that describes them.

A bundle is a directory::

    manifest.json                 written last: a bundle without one is incomplete
    data/public.users.copy        COPY text format, one row a line
    data/public.content.jsonl     or one JSON object a line, keys the column names

The manifest names each table's file, format, columns, primary and foreign keys, row
count, size and SHA-256, the order to load the tables in (parents first), and a
description of the transforms applied (never a salt or a secret). Both halves of
:mod:`pgwarden.transfer` use this module: the export writes with :class:`DataFile` and
:func:`write_manifest`, the import reads with :func:`read_bundle` and
:meth:`Bundle.iter_data` (which checks the checksum as it streams)::

    bundle = read_bundle("out/")
    for name in bundle.order:
        table = bundle.table(name)
        for chunk in bundle.iter_data(table):   # BundleError at the end if tampered
            copy.write(chunk)

JSONL values are JSON-native for booleans, numbers (read them with
``json.loads(line, parse_float=decimal.Decimal)`` to keep numeric precision) and
json/jsonb (nested JSON); every other type is a string as PostgreSQL prints it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from pgwarden.errors import UserError

__all__ = [
    "BUNDLE_VERSION",
    "MANIFEST_NAME",
    "Bundle",
    "BundleColumn",
    "BundleError",
    "BundleForeignKey",
    "BundleTable",
    "DataFile",
    "Format",
    "TableSchema",
    "TransformNote",
    "data_file_name",
    "read_bundle",
    "schema_fingerprint",
    "write_manifest",
]

BUNDLE_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
FORMATS = ("copy", "jsonl")
Format = Literal["copy", "jsonl"]

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class BundleError(UserError):
    """Raise when a bundle is missing, malformed, or its data does not match its manifest."""


@dataclass(frozen=True)
class BundleColumn:
    """One column of an exported table: its name, type as ``format_type`` prints it."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class BundleForeignKey:
    """A foreign key: ``columns`` of this table reference ``ref_columns`` of another."""

    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]

    @property
    def references(self) -> str:
        """Return the referenced table as ``schema.name``."""
        return f"{self.ref_schema}.{self.ref_table}"


@dataclass(frozen=True)
class TableSchema:
    """What the schema fingerprint covers of a table: columns and keys."""

    schema: str
    name: str
    columns: tuple[BundleColumn, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[BundleForeignKey, ...]

    @property
    def qualified(self) -> str:
        """Return ``schema.name``, unquoted, as the manifest's ``order`` lists it."""
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        """Return the names of the columns in the order the data file has them."""
        return [column.name for column in self.columns]


@dataclass(frozen=True)
class BundleTable(TableSchema):
    """A table in a bundle: its schema, and its data file with size and checksum."""

    file: str
    format: Format
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class TransformNote:
    """A description of one transform applied on export: ``kind`` on ``table.column``."""

    table: str
    column: str
    kind: str


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk (:func:`read_bundle`) or just written (:func:`write_manifest`)."""

    path: Path
    created_at: str
    source_database: str
    server_version: str
    schema_fingerprint: str
    tables: tuple[BundleTable, ...]
    order: tuple[str, ...]
    transforms: tuple[TransformNote, ...] = ()
    cycles: tuple[tuple[str, ...], ...] = field(default=())

    def table(self, qualified: str) -> BundleTable:
        """Return the table named ``schema.name``, or raise :class:`BundleError`."""
        for table in self.tables:
            if table.qualified == qualified:
                return table
        raise BundleError(f"the bundle has no table {qualified!r}.")

    def file_path(self, table: BundleTable) -> Path:
        """Return the path of ``table``'s data file."""
        return self.path / table.file

    def iter_data(self, table: BundleTable, *, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """Yield ``table``'s data file in chunks, checking size and SHA-256 at the end.

        The check happens after the last chunk is yielded: a consumer loading the chunks
        in a transaction sees :class:`BundleError` before it commits.
        """
        digest = hashlib.sha256()
        size = 0
        try:
            with self.file_path(table).open("rb") as handle:
                while chunk := handle.read(chunk_size):
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
        except FileNotFoundError as exc:
            raise BundleError(
                f"the data file {table.file} of {table.qualified} is missing.",
                hint="Copy the whole bundle directory, data/ included.",
            ) from exc
        if size != table.bytes or digest.hexdigest() != table.sha256:
            raise BundleError(
                f"the data file {table.file} of {table.qualified} does not match the manifest"
                f" ({size} bytes, sha256 {digest.hexdigest()[:12]}…;"
                f" expected {table.bytes} bytes, {table.sha256[:12]}…).",
                hint="The file was changed or truncated after export; export again.",
            )

    def iter_lines(self, table: BundleTable) -> Iterator[bytes]:
        """Yield the rows of ``table``'s file one line at a time, without the newline.

        Both formats hold one row a line (COPY text escapes newlines inside values).
        """
        rest = b""
        for chunk in self.iter_data(table):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield rest

    def verify(self) -> None:
        """Check every data file's size and SHA-256, raising :class:`BundleError` on a mismatch."""
        for table in self.tables:
            for _ in self.iter_data(table):
                pass


class _HasSchema(Protocol):
    @property
    def schema(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def columns(self) -> tuple[BundleColumn, ...]: ...
    @property
    def primary_key(self) -> tuple[str, ...]: ...
    @property
    def foreign_keys(self) -> tuple[BundleForeignKey, ...]: ...


def schema_fingerprint(tables: Iterable[_HasSchema]) -> str:
    """Return the SHA-256 hex of the canonical JSON of ``tables``' columns and keys.

    Covers, per table: columns (name, type, not null) sorted by name, the primary key
    columns in key order, and foreign keys (columns and referenced table and columns),
    sorted. Tables are sorted by schema and name, so the same schema gives the same
    fingerprint whatever the column or table order. The import side computes it over the
    target's tables to tell whether the bundle fits.
    """
    canonical = [
        {
            "schema": table.schema,
            "name": table.name,
            "columns": [
                {"name": c.name, "type": c.type, "not_null": not c.nullable}
                for c in sorted(table.columns, key=lambda c: c.name)
            ],
            "primary_key": list(table.primary_key),
            "foreign_keys": sorted(
                (_foreign_key_json(fk) for fk in table.foreign_keys),
                key=lambda fk: json.dumps(fk, sort_keys=True),
            ),
        }
        for table in sorted(tables, key=lambda t: (t.schema, t.name))
    ]
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def data_file_name(schema: str, name: str, format: Format) -> str:
    """Return the bundle-relative path of a table's data file: ``data/<schema>.<name>.<format>``.

    Every character outside ``[A-Za-z0-9_.-]`` is percent-encoded (as UTF-8 bytes), so
    no name can leave ``data/`` or collide with the separator ``/``.
    """
    return f"{DATA_DIR}/{_quote_part(schema)}.{_quote_part(name)}.{format}"


def _quote_part(part: str) -> str:
    return "".join(
        char if char in _SAFE else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in part
    )


class DataFile:
    """Write one table's data file, counting rows and bytes and hashing as it goes.

    ::

        with DataFile(out_dir, "public", "users", "copy") as data:
            for chunk in chunks:
                data.write(chunk)
        data.rows, data.bytes, data.sha256

    ``rows`` counts newlines: both formats end every row with one.
    """

    def __init__(self, bundle_dir: str | Path, schema: str, name: str, format: Format) -> None:
        self.file = data_file_name(schema, name, format)
        self.path = Path(bundle_dir) / self.file
        self.rows = 0
        self.bytes = 0
        self._digest = hashlib.sha256()
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> DataFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("xb")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk`` to the file."""
        assert self._handle is not None, "DataFile used outside its with block"
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        self._handle.write(data)
        self._digest.update(data)
        self.bytes += len(data)
        self.rows += data.count(b"\n")

    @property
    def sha256(self) -> str:
        """Return the SHA-256 hex of what was written so far."""
        return self._digest.hexdigest()


def write_manifest(
    bundle_dir: str | Path,
    *,
    source_database: str,
    server_version: str,
    tables: Sequence[BundleTable],
    order: Sequence[str],
    transforms: Sequence[TransformNote] = (),
    cycles: Sequence[Sequence[str]] = (),
    created_at: datetime | None = None,
) -> Bundle:
    """Write ``manifest.json`` into ``bundle_dir`` (atomically, last of all) and return the bundle.

    ``order`` lists every table once, parents before children; ``cycles`` lists groups of
    tables whose foreign keys form a cycle between tables (self-references excluded), for
    which no order puts every parent first.
    """
    path = Path(bundle_dir)
    bundle = Bundle(
        path=path,
        created_at=(created_at or datetime.now(UTC)).isoformat(),
        source_database=source_database,
        server_version=server_version,
        schema_fingerprint=schema_fingerprint(tables),
        tables=tuple(tables),
        order=tuple(order),
        transforms=tuple(transforms),
        cycles=tuple(tuple(group) for group in cycles),
    )
    _check_bundle(bundle)
    temporary = path / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(json.dumps(_manifest_json(bundle), indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path / MANIFEST_NAME)
    return bundle


def read_bundle(bundle_dir: str | Path, *, verify: bool = False) -> Bundle:
    """Read and validate the bundle in ``bundle_dir``; with ``verify``, check every file's hash.

    Raises :class:`BundleError` for a missing or malformed manifest, an unknown version,
    a data file name that is not the one its table must have, or (with ``verify``) a
    data file whose size or SHA-256 differs from the manifest. Without ``verify`` the
    hashes are checked as :meth:`Bundle.iter_data` streams each file.
    """
    path = Path(bundle_dir)
    manifest = path / MANIFEST_NAME
    try:
        data = json.loads(manifest.read_text())
    except FileNotFoundError as exc:
        raise BundleError(
            f"{path} has no {MANIFEST_NAME}.",
            hint="Point at a bundle directory; one without a manifest is an unfinished export.",
        ) from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {manifest}: {exc}") from exc
    bundle = _parse_manifest(path, data)
    _check_bundle(bundle)
    if verify:
        bundle.verify()
    return bundle


def _foreign_key_json(fk: BundleForeignKey) -> dict[str, Any]:
    return {
        "columns": list(fk.columns),
        "references": {
            "schema": fk.ref_schema,
            "table": fk.ref_table,
            "columns": list(fk.ref_columns),
        },
    }


def _manifest_json(bundle: Bundle) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "pgwarden_bundle": BUNDLE_VERSION,
        "created_at": bundle.created_at,
        "source": {"database": bundle.source_database, "server_version": bundle.server_version},
        "schema_fingerprint": bundle.schema_fingerprint,
        "tables": [
            {
                "schema": table.schema,
                "name": table.name,
                "file": table.file,
                "format": table.format,
                "columns": [
                    {"name": c.name, "type": c.type, "nullable": c.nullable} for c in table.columns
                ],
                "primary_key": list(table.primary_key),
                "foreign_keys": [_foreign_key_json(fk) for fk in table.foreign_keys],
                "rows": table.rows,
                "bytes": table.bytes,
                "sha256": table.sha256,
            }
            for table in bundle.tables
        ],
        "order": list(bundle.order),
        "transforms": [
            {"table": note.table, "column": note.column, "kind": note.kind}
            for note in bundle.transforms
        ],
    }
    if bundle.cycles:
        manifest["cycles"] = [list(group) for group in bundle.cycles]
    return manifest


def _parse_manifest(path: Path, data: Any) -> Bundle:
    try:
        if not isinstance(data, dict):
            raise TypeError("the manifest is not a JSON object")
        version = data["pgwarden_bundle"]
        if version != BUNDLE_VERSION:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this pgwarden reads"
                f" {BUNDLE_VERSION}).",
                hint="Use the pgwarden version that wrote the bundle.",
            )
        return Bundle(
            path=path,
            created_at=_str(data["created_at"]),
            source_database=_str(data["source"]["database"]),
            server_version=_str(data["source"]["server_version"]),
            schema_fingerprint=_str(data["schema_fingerprint"]),
            tables=tuple(_parse_table(item) for item in data["tables"]),
            order=tuple(_str(name) for name in data["order"]),
            transforms=tuple(
                TransformNote(_str(t["table"]), _str(t["column"]), _str(t["kind"]))
                for t in data.get("transforms", [])
            ),
            cycles=tuple(tuple(_str(name) for name in group) for group in data.get("cycles", [])),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"{path / MANIFEST_NAME} is malformed: {type(exc).__name__}: {exc}.",
            hint="The manifest must be as pgwarden export wrote it; export again.",
        ) from exc


def _parse_table(item: Any) -> BundleTable:
    fmt = _str(item["format"])
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    return BundleTable(
        schema=_str(item["schema"]),
        name=_str(item["name"]),
        columns=tuple(
            BundleColumn(_str(c["name"]), _str(c["type"]), _bool(c["nullable"]))
            for c in item["columns"]
        ),
        primary_key=tuple(_str(name) for name in item["primary_key"]),
        foreign_keys=tuple(
            BundleForeignKey(
                columns=tuple(_str(name) for name in fk["columns"]),
                ref_schema=_str(fk["references"]["schema"]),
                ref_table=_str(fk["references"]["table"]),
                ref_columns=tuple(_str(name) for name in fk["references"]["columns"]),
            )
            for fk in item["foreign_keys"]
        ),
        file=_str(item["file"]),
        format=fmt,  # type: ignore[arg-type]  # checked against FORMATS above
        rows=_int(item["rows"]),
        bytes=_int(item["bytes"]),
        sha256=_str(item["sha256"]),
    )


def _check_bundle(bundle: Bundle) -> None:
    names = [table.qualified for table in bundle.tables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    problems = [f"table {name} is listed twice" for name in duplicates]
    files = [table.file for table in bundle.tables]
    problems += [f"file {f} is shared" for f in sorted({f for f in files if files.count(f) > 1})]
    for table in bundle.tables:
        if table.file != data_file_name(table.schema, table.name, table.format):
            problems.append(f"{table.qualified} names the file {table.file!r}")
        if not _SHA256.fullmatch(table.sha256):
            problems.append(f"{table.qualified} has a malformed sha256")
        if table.rows < 0 or table.bytes < 0:
            problems.append(f"{table.qualified} has a negative count")
        known = set(table.column_names)
        if missing := [c for c in table.primary_key if c not in known]:
            problems.append(f"{table.qualified}'s primary key names unknown columns {missing}")
        for fk in table.foreign_keys:
            if missing := [c for c in fk.columns if c not in known]:
                problems.append(f"{table.qualified}'s foreign key names unknown columns {missing}")
    if sorted(bundle.order) != sorted(names):
        problems.append("order does not list every table exactly once")
    if problems:
        raise BundleError(
            f"the bundle in {bundle.path} is inconsistent: {'; '.join(problems)}.",
            hint="The manifest must be as pgwarden export wrote it; export again.",
        )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
