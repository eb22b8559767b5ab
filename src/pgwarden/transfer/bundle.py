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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from pgwarden._sql import table_key
from pgwarden.transfer import _manifest
from pgwarden.transfer._files import NotRegular, create_private, open_regular, private_directory
from pgwarden.transfer.errors import BundleError

__all__ = [
    "BUNDLE_VERSION",
    "MANIFEST_NAME",
    "Bundle",
    "BundleColumn",
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

# Characters a name keeps in its file name; every other is percent-encoded, "." (the
# separator of schema and name) and "%" included, so two tables never share a name.
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_LONGEST = 200  # characters of a file name kept before it is shortened
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

    Every character outside ``[A-Za-z0-9_-]`` is percent-encoded (as UTF-8 bytes), ``.``
    and ``%`` included, so no name can leave ``data/``, and two tables (``"a.b".c`` and
    ``a."b.c"``) never get one name. A name too long for a file system keeps its first
    characters and ends with ``~`` and a hash of the table's name.
    """
    stem = f"{_quote_part(schema)}.{_quote_part(name)}"
    if len(stem) > _LONGEST:
        digest = hashlib.sha256(f"{schema}\0{name}".encode()).hexdigest()[:16]
        stem = f"{stem[: _LONGEST - 17]}~{digest}"
    return f"{DATA_DIR}/{stem}.{format}"


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

    ``rows`` counts newlines: both formats end every row with one. The file is new and
    0600, in a 0700 ``data/``; should its name be taken (two names that differ in case
    only, on a file system that folds case), it is numbered: ``data/public.Users~2.copy``.
    """

    def __init__(self, bundle_dir: str | Path, schema: str, name: str, format: Format) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.file = data_file_name(schema, name, format)
        self.path = self.bundle_dir / self.file
        self.rows = 0
        self.bytes = 0
        self._digest = hashlib.sha256()
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> DataFile:
        private_directory(self.bundle_dir)
        private_directory(self.path.parent)
        stem, suffix = self.file.removesuffix(self.path.suffix), self.path.suffix
        number = 1
        while True:
            try:
                self._handle = create_private(self.path)
                return self
            except FileExistsError:
                number += 1
                if number > 1000:
                    raise
                self.file = f"{stem}~{number}{suffix}"
                self.path = self.bundle_dir / self.file

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
    text = json.dumps(_manifest_json(bundle), indent=2, ensure_ascii=False) + "\n"
    _parse(path, text.encode())  # write only what a reader accepts
    private_directory(path)
    temporary = path / f".{MANIFEST_NAME}.tmp"
    temporary.unlink(missing_ok=True)
    with create_private(temporary) as handle:
        handle.write(text.encode())
    os.replace(temporary, path / MANIFEST_NAME)
    return replace(bundle, manifest_sha256=hashlib.sha256(text.encode()).hexdigest())


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
    bundle = _bundle(path, _parse(path, raw), hashlib.sha256(raw).hexdigest())
    bundle.check_files()
    if verify:
        bundle.verify()
    return bundle


def _parse(path: Path, raw: bytes) -> _manifest.Manifest:
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
