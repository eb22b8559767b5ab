"""Write a bundle: each table's data file, then, last of all, the manifest.

:class:`DataFile` writes one table's file, counting rows and bytes and hashing as it
goes; :func:`write_manifest` writes ``manifest.json`` once every file is complete, so a
bundle without one is unfinished by construction. The format itself, and reading it
back, live in :mod:`pgwarden.transfer.bundle`, which the import shares.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pgwarden.transfer._files import create_private, private_directory
from pgwarden.transfer.bundle import (
    BUNDLE_VERSION,
    DATA_DIR,
    MANIFEST_NAME,
    Bundle,
    BundleTable,
    Format,
    TransformNote,
    foreign_key_json,
    parse_manifest,
    schema_fingerprint,
)

__all__ = ["DataFile", "data_file_name", "write_manifest"]

# Characters a name keeps in its file name; every other is percent-encoded, "." (the
# separator of schema and name) and "%" included, so two tables never share a name.
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_LONGEST = 200  # characters of a file name kept before it is shortened


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

    def __exit__(self, *exc_info: object) -> None:
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
    parse_manifest(path, text.encode())  # write only what a reader accepts
    private_directory(path)
    temporary = path / f".{MANIFEST_NAME}.tmp"
    temporary.unlink(missing_ok=True)
    with create_private(temporary) as handle:
        handle.write(text.encode())
    os.replace(temporary, path / MANIFEST_NAME)
    return replace(bundle, manifest_sha256=hashlib.sha256(text.encode()).hexdigest())


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
                "foreign_keys": [foreign_key_json(fk) for fk in table.foreign_keys],
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
