"""Read a pgwarden bundle, and define its format: table data files and their manifest.

A bundle is a directory::

    manifest.json                 written last: a bundle without one is incomplete
    data/public.users.copy        COPY text format, one row a line
    data/public.content.jsonl     or one JSON object a line, keys the column names

The manifest names each table's file, format, columns, primary and foreign keys, row
count, size and SHA-256, the order to load the tables in (parents first), and a
description of the transforms applied (never a salt or a secret). Both halves of
:mod:`pgwarden.transfer` use this module's types and :func:`schema_fingerprint`; the
export writes a bundle with :mod:`pgwarden.transfer.export.bundle_files`, the import
reads it with :func:`read_bundle` and :meth:`Bundle.iter_data` (which checks the
checksum as it streams)::

    bundle = read_bundle("out/")
    for name in bundle.order:
        table = bundle.table(name)
        for chunk in bundle.iter_data(table):   # BundleError at the end if tampered
            copy.write(chunk)

JSONL values are JSON-native for booleans, numbers (read them with
``json.loads(line, parse_float=decimal.Decimal)`` to keep numeric precision) and
json/jsonb (nested JSON); every other type is a string as PostgreSQL prints it.

A bundle is written readable by its owner only (files 0600, directories 0700). Read
back, it is untrusted: the manifest is checked against a strict schema
(:mod:`._manifest`), each table's file must be a plain name in ``data/``, one file a
table, and files are opened only as regular files, never through a symbolic link
(:mod:`._files`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pgwarden._sql import table_key
from pgwarden.transfer import _manifest
from pgwarden.transfer._files import NotRegular, open_regular
from pgwarden.transfer.errors import BundleError

__all__ = [
    "BUNDLE_VERSION",
    "DATA_DIR",
    "MANIFEST_NAME",
    "Bundle",
    "BundleColumn",
    "BundleForeignKey",
    "BundleTable",
    "Format",
    "TableSchema",
    "TransformNote",
    "foreign_key_json",
    "parse_manifest",
    "read_bundle",
    "schema_fingerprint",
]

BUNDLE_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
FORMATS = ("copy", "jsonl")
Format = Literal["copy", "jsonl"]
_CHUNK = 1 << 20


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
        return table_key(self.ref_schema, self.ref_table)


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
        return table_key(self.schema, self.name)

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
    """A bundle read from disk (:func:`read_bundle`) or just written by the export."""

    path: Path
    created_at: str
    source_database: str
    server_version: str
    schema_fingerprint: str
    tables: tuple[BundleTable, ...]
    order: tuple[str, ...]
    transforms: tuple[TransformNote, ...] = ()
    cycles: tuple[tuple[str, ...], ...] = field(default=())
    manifest_sha256: str = ""

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
        with self._open(table) as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
                size += len(chunk)
                yield chunk
        if size != table.bytes or digest.hexdigest() != table.sha256:
            raise BundleError(
                f"the data file {table.file} of {table.qualified} does not match the manifest"
                f" ({size} bytes, sha256 {digest.hexdigest()[:12]}…;"
                f" expected {table.bytes} bytes, {table.sha256[:12]}…).",
                hint="The file was changed or truncated after export; export again.",
            )

    def _open(self, table: BundleTable) -> IO[bytes]:
        try:
            return open_regular(self.path, table.file)
        except FileNotFoundError as exc:
            raise BundleError(
                f"the data file {table.file} of {table.qualified} is missing.",
                hint="Copy the whole bundle directory, data/ included.",
            ) from exc
        except NotRegular as exc:
            raise BundleError(
                f"the data file {table.file} of {table.qualified} is a symbolic link or not"
                " a regular file.",
                hint="A bundle holds plain files only; copy it without links.",
            ) from exc
        except OSError as exc:
            raise BundleError(
                f"cannot read the data file {table.file} of {table.qualified}: {exc.strerror}."
            ) from exc

    def iter_lines(self, table: BundleTable) -> Iterator[bytes]:
        """Yield the rows of ``table``'s file one line at a time, without the newline.

        Both formats hold one row a line (COPY text escapes newlines inside values).
        """
        rest: list[bytes] = []  # pieces of a line longer than a chunk: joined once
        for chunk in self.iter_data(table):
            lines = chunk.split(b"\n")
            if len(lines) == 1:
                rest.append(chunk)
                continue
            if rest:
                lines[0] = b"".join([*rest, lines[0]])
            rest = [lines.pop()]
            yield from lines
        if tail := b"".join(rest):
            yield tail

    def verify(self) -> None:
        """Check every data file's size and SHA-256, raising :class:`BundleError` on a mismatch."""
        for table in self.tables:
            for _ in self.iter_data(table):
                pass

    def first_bad_line(self, table: BundleTable) -> tuple[int, str] | None:
        """Return the number of the first line of ``table``'s file not in its format, and why.

        A COPY line must be UTF-8 with one field a column; a JSONL line a JSON object.
        ``None`` when every line is well formed (a value may still be refused). Reads the
        whole file: for finding, after a load failed, the line to blame.
        """
        width = len(table.columns)
        for number, line in enumerate(self.iter_lines(table), start=1):
            if problem := _line_problem(line, table.format, width):
                return number, problem
        return None

    def check_files(self) -> None:
        """Check that each table's data file is a regular file of the manifest's size.

        Raises :class:`BundleError` for a missing file, a link, anything but a regular
        file, a size other than the manifest's, or two tables naming one file (a hard
        link, say): a truncated or swapped file is refused before any row is read.
        """
        seen: dict[tuple[int, int], str] = {}
        for table in self.tables:
            with self._open(table) as handle:
                found = os.fstat(handle.fileno())
            if found.st_size != table.bytes:
                raise BundleError(
                    f"the data file {table.file} of {table.qualified} does not match the"
                    f" manifest ({found.st_size} bytes; expected {table.bytes}).",
                    hint="The file was changed or truncated after export; export again.",
                )
            other = seen.setdefault((found.st_dev, found.st_ino), table.qualified)
            if other != table.qualified:
                raise BundleError(
                    f"{other} and {table.qualified} name one data file.",
                    hint="The manifest must be as pgwarden export wrote it; export again.",
                )


def _line_problem(line: bytes, format: Format, width: int) -> str | None:
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 (byte {exc.start + 1})"
    if format == "copy":
        fields = text.count("\t") + 1
        return None if fields == width else f"has {fields} field(s), not {width}"
    if not text.strip():
        return "is empty"
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        return "nests too deep"
    except ValueError as exc:
        return f"is not JSON ({exc})"
    return None if isinstance(value, dict) else "is not a JSON object"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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
                (foreign_key_json(fk) for fk in table.foreign_keys),
                key=lambda fk: json.dumps(fk, sort_keys=True),
            ),
        }
        for table in sorted(tables, key=lambda t: (t.schema, t.name))
    ]
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_bundle(bundle_dir: str | Path, *, verify: bool = False) -> Bundle:
    """Read and validate the bundle in ``bundle_dir``; with ``verify``, check every file's hash.

    Raises :class:`BundleError` for a missing manifest, one that is not of the schema
    (see :mod:`._manifest`) or of an unknown version, a data file name that is not a
    plain name in ``data/`` or that two tables share, a data file that is missing, a
    link or not a regular file, of another size than the manifest's, or (with
    ``verify``) of another SHA-256. Without ``verify`` the hashes are checked as
    :meth:`Bundle.iter_data` streams each file.
    """
    path = Path(bundle_dir)
    raw = _read_manifest(path)
    bundle = _bundle(path, parse_manifest(path, raw), hashlib.sha256(raw).hexdigest())
    bundle.check_files()
    if verify:
        bundle.verify()
    return bundle


def parse_manifest(path: Path, raw: bytes) -> _manifest.Manifest:
    """Return the manifest ``raw`` of the bundle at ``path``, or raise :class:`BundleError`."""
    try:
        return _manifest.parse_manifest(raw, BUNDLE_VERSION)
    except _manifest.UnsupportedVersion as exc:
        raise BundleError(
            f"bundle format version {exc} is not supported (this pgwarden reads {BUNDLE_VERSION}).",
            hint="Use the pgwarden version that wrote the bundle.",
        ) from None
    except _manifest.ManifestInvalid as exc:
        raise BundleError(
            f"{path / MANIFEST_NAME} is malformed: {exc}.",
            hint="The manifest must be as pgwarden export wrote it; export again.",
        ) from None


def _read_manifest(path: Path) -> bytes:
    manifest = path / MANIFEST_NAME
    try:
        with open_regular(path, MANIFEST_NAME) as handle:
            raw = handle.read(_manifest.MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise BundleError(
            f"{path} has no {MANIFEST_NAME}.",
            hint="Point at a bundle directory; one without a manifest is an unfinished export.",
        ) from exc
    except NotRegular as exc:
        raise BundleError(
            f"{manifest} is a symbolic link or not a regular file.",
            hint="A bundle holds plain files only; copy it without links.",
        ) from exc
    except OSError as exc:
        raise BundleError(f"cannot read {manifest}: {exc.strerror}.") from exc
    if len(raw) > _manifest.MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{manifest} is larger than {_manifest.MAX_MANIFEST_BYTES >> 20} MiB.",
            hint="The manifest must be as pgwarden export wrote it; export again.",
        )
    return raw


def foreign_key_json(fk: BundleForeignKey) -> dict[str, Any]:
    """Return ``fk`` as the manifest and the schema fingerprint write it."""
    return {
        "columns": list(fk.columns),
        "references": {
            "schema": fk.ref_schema,
            "table": fk.ref_table,
            "columns": list(fk.ref_columns),
        },
    }


def _bundle(path: Path, manifest: _manifest.Manifest, sha256: str) -> Bundle:
    return Bundle(
        path=path,
        created_at=manifest.created_at,
        source_database=manifest.source.database,
        server_version=manifest.source.server_version,
        schema_fingerprint=manifest.schema_fingerprint,
        tables=tuple(
            BundleTable(
                schema=table.schema_,
                name=table.name,
                columns=tuple(BundleColumn(c.name, c.type, c.nullable) for c in table.columns),
                primary_key=tuple(table.primary_key),
                foreign_keys=tuple(
                    BundleForeignKey(
                        columns=tuple(fk.columns),
                        ref_schema=fk.references.schema_,
                        ref_table=fk.references.table,
                        ref_columns=tuple(fk.references.columns),
                    )
                    for fk in table.foreign_keys
                ),
                file=table.file,
                format=table.format,
                rows=table.rows,
                bytes=table.bytes,
                sha256=table.sha256,
            )
            for table in manifest.tables
        ),
        order=tuple(manifest.order),
        transforms=tuple(TransformNote(t.table, t.column, t.kind) for t in manifest.transforms),
        cycles=tuple(tuple(group) for group in manifest.cycles),
        manifest_sha256=sha256,
    )
