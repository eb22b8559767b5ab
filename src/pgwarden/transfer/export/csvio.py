"""Export one table to a CSV (with a header) or JSONL file, filtered and transformed.

::

    with engine.connect() as conn:
        result = export_table(conn, "public.content", "content.csv",
                              where=["state = 'published'"])

CSV comes straight from ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)``; with
transforms, rows are read as COPY text, transformed, and written as CSV that quotes
every value, so NULL (an empty field) and the empty string (``""``) stay apart. JSONL
is one object a line, as in a bundle. Filters choose rows through a temporary table of
row ids (their values stay bound parameters, which COPY cannot take); no closure is
added: one table is one table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy.engine import Connection

from pgwarden.errors import UserError
from pgwarden.transfer._files import create_private
from pgwarden.transfer.anonymize.transforms import TransformSpec, compile_transforms
from pgwarden.transfer.catalog import load_catalog
from pgwarden.transfer.export._copyout import CopyOut, copy_statement, snapshot, stream_rows
from pgwarden.transfer.export.subset import TableSubset, select_subset, selection
from pgwarden.transfer.progress import ProgressCallback, TransferProgress

__all__ = ["FileFormat", "TableFile", "export_table"]

FileFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class TableFile:
    """What :func:`export_table` wrote: the table, rows, bytes and the time it took."""

    table: str
    format: FileFormat
    rows: int
    bytes: int
    seconds: float


class _Counting:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.bytes = 0

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.bytes += len(chunk)


def export_table(
    conn: Connection,
    table: str,
    out: str | Path | BinaryIO,
    *,
    format: FileFormat = "csv",
    where: Sequence[str] = (),
    date_column: str | None = None,
    since: str | None = None,
    until: str | None = None,
    transforms: TransformSpec | None = None,
    on_progress: ProgressCallback | None = None,
) -> TableFile:
    """Write the rows of ``table`` passing the filters to ``out`` (a path or a binary file).

    A path is written whole or not at all: on an error the partial file is removed. A new
    file is created 0600 (it may hold personal data); an existing one keeps its mode.
    """
    if format not in ("csv", "jsonl"):
        raise UserError(f"unknown format {format!r}; use csv or jsonl.")
    if (since or until) and not date_column:
        raise UserError("--since and --until need --date-column, the column they bound.")
    if isinstance(out, str | Path):
        path = Path(out)
        try:
            handle = create_private(path, exclusive=False)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror}.") from exc
        try:
            with handle:
                return export_table(
                    conn, table, handle, format=format, where=where, date_column=date_column,
                    since=since, until=until, transforms=transforms, on_progress=on_progress,
                )  # fmt: skip
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    started = time.monotonic()
    sink = _Counting(out)
    with snapshot(conn):
        catalog = load_catalog(conn)
        chosen = selection(
            catalog,
            catalog.find(table).qualified,
            where=where,
            date_column=date_column,
            since=since,
            until=until,
        )
        meta = chosen.table
        if chosen.filters:
            part = select_subset(conn, catalog, [chosen], children=0, parents=False).tables[
                meta.qualified
            ]
        else:
            part = TableSubset(meta, None, direct=meta.estimated_rows)
        spec = transforms.propagate(catalog.tables.values()) if transforms else None
        transform = compile_transforms(spec, meta) if spec else None
        changes = transform is not None and not transform.identity
        source = "copy" if format == "csv" and changes else format
        copy = CopyOut(conn, copy_statement(list(meta.columns), part.source(), source))

        def report(rows: int) -> None:
            if on_progress is not None:
                expected = max(part.rows, rows)
                on_progress(
                    TransferProgress("export", meta.qualified, rows, expected, rows, expected)
                )

        lines = stream_rows(
            copy, sink, fmt=source, columns=meta.column_names, transform=transform,
            output=format, report=report,
        )  # fmt: skip
    rows = copy.rows if format == "csv" and not changes else lines
    return TableFile(meta.qualified, format, rows, sink.bytes, time.monotonic() - started)
