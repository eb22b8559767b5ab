"""Stream rows out of PostgreSQL with COPY TO STDOUT, and re-emit them transformed.

Rows never gather in memory: psycopg's ``cursor.copy()`` hands over the server's
CopyData messages as they come, and they go to the file in 1 MiB writes. A table with
transforms is parsed line by line (COPY text, CSV or JSON), transformed and written
again; one without is copied byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.errors import UserError
from pgwarden.insight.findings import quote
from pgwarden.transfer.bundle import BundleColumn
from pgwarden.transfer.copytext import (
    format_copy_row,
    json_value_to_text,
    parse_copy_line,
    unescape_copy_field,
)
from pgwarden.transfer.transforms import TableTransform

__all__ = [
    "SESSION_SETTINGS",
    "CopyOut",
    "Sink",
    "copy_statement",
    "select_list",
    "snapshot",
    "stream_rows",
]

# Text forms that read back the same anywhere: ISO dates in UTC, hex bytea, exact floats.
SESSION_SETTINGS = (
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL client_encoding = 'UTF8'",
    "SET LOCAL statement_timeout = 0",
)

# Types JSONL keeps as JSON values; every other type goes as text.
_JSON_NATIVE = ("boolean", "smallint", "integer", "bigint", "real", "double precision", "json")
_FLUSH = 1 << 20
_ROWS_BETWEEN_REPORTS = 10_000


class Sink(Protocol):
    """Where rows go: a :class:`~pgwarden.transfer.bundle.DataFile` or a plain file."""

    def write(self, chunk: bytes) -> Any: ...


def select_list(
    columns: Iterable[BundleColumn], fmt: str, overrides: Mapping[str, str] | None = None
) -> str:
    """Return the SELECT list for a format: the columns, or JSONL's value expressions.

    ``overrides`` gives SQL to select in place of some columns (a key set to NULL).
    """
    items = []
    for column in columns:
        name = quote(column.name)
        value = (overrides or {}).get(column.name, name)
        native = column.type in _JSON_NATIVE or column.type in ("jsonb", "numeric")
        if fmt == "jsonl" and not (native or column.type.startswith("numeric(")):
            items.append(f"({value})::text AS {name}")
        else:
            items.append(name if value == name else f"{value} AS {name}")
    return ", ".join(items)


def copy_statement(
    columns: list[BundleColumn], source: str, fmt: str, overrides: Mapping[str, str] | None = None
) -> str:
    """Return the COPY ... TO STDOUT statement for rows of ``source`` in format ``fmt``."""
    select = f"SELECT {select_list(columns, fmt, overrides)} {source}"
    if fmt == "jsonl":
        return f"COPY (SELECT row_to_json(r) FROM ({select}) AS r) TO STDOUT"
    if fmt == "csv":
        return f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)"
    return f"COPY ({select}) TO STDOUT"


@contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """Run the block in one REPEATABLE READ transaction with portable text settings.

    Rolls back at the end (the temporary tables of row ids go with it) and puts the
    connection's isolation level back.
    """
    if conn.in_transaction():
        raise UserError(
            "the export needs a connection outside a transaction: it runs its own.",
            hint="End the open transaction first: conn.commit() or conn.rollback().",
        )
    default_level = conn.default_isolation_level
    conn.execution_options(isolation_level="REPEATABLE READ")
    try:
        with conn.begin() as transaction:
            for setting in SESSION_SETTINGS:
                conn.execute(text(setting))
            yield
            transaction.rollback()
    finally:
        if default_level is not None:
            conn.execution_options(isolation_level=default_level)


class CopyOut:
    """Iterate over what ``COPY ... TO STDOUT`` sends; ``rows`` is the server's count after."""

    def __init__(self, conn: Connection, statement: str) -> None:
        self.conn = conn
        self.statement = statement
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        dbapi = self.conn.connection.dbapi_connection
        if not isinstance(dbapi, psycopg.Connection):
            raise TypeError("COPY needs a psycopg 3 connection (postgresql+psycopg://)")
        with dbapi.cursor() as cursor:
            with cursor.copy(self.statement) as copy:
                for data in copy:
                    yield bytes(data)
            self.rows = max(cursor.rowcount, 0)


def stream_rows(
    chunks: Iterable[bytes],
    sink: Sink,
    *,
    fmt: str,
    columns: list[str],
    transform: TableTransform | None,
    output: str | None = None,
    report: Callable[[int], None] | None = None,
) -> int:
    """Write ``chunks`` of COPY output in ``fmt`` to ``sink``; return the lines written.

    With a ``transform``, rows are parsed, transformed and written in ``output`` (by
    default ``fmt``; ``csv`` from COPY text input). ``report(rows)`` is called every
    10,000 rows or 1 MiB or so, and at the end.
    """
    if transform is not None and not transform.identity:
        return _transformed(
            chunks, sink, fmt=fmt, output=output or fmt, columns=columns, transform=transform,
            report=report,
        )  # fmt: skip
    buffer = bytearray()
    rows = 0
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= _FLUSH:
            rows += _flush(buffer, sink, fmt)
            if report:
                report(rows)
    rows += _flush(buffer, sink, fmt)
    if report:
        report(rows)
    return rows


def _flush(buffer: bytearray, sink: Sink, fmt: str) -> int:
    if fmt == "jsonl":
        # One column of JSON in COPY text: undo COPY's escapes of backslashes and the like.
        data = b"\n".join(unescape_copy_field(line) for line in bytes(buffer).split(b"\n"))
    else:
        data = bytes(buffer)
    sink.write(data)
    buffer.clear()
    return data.count(b"\n")


def _transformed(
    chunks: Iterable[bytes],
    sink: Sink,
    *,
    fmt: str,
    output: str,
    columns: list[str],
    transform: TableTransform,
    report: Callable[[int], None] | None,
) -> int:
    out = bytearray()
    rows = 0
    names = list(transform.columns)
    if output == "csv":
        out += _csv_line(names)
    if fmt == "copy" and output in ("copy", "csv"):
        # The hot loop: lists of values in column order, no dict per row.
        emit = format_copy_row if output == "copy" else _csv_line
        for line in _lines(chunks):
            out += emit(transform.apply(parse_copy_line(line)))
            rows += 1
            if len(out) >= _FLUSH:
                sink.write(bytes(out))
                out.clear()
            if report and rows % _ROWS_BETWEEN_REPORTS == 0:
                report(rows)
    else:
        records = _json_rows(chunks) if fmt == "jsonl" else _copy_rows(chunks, columns)
        for record in records:
            row = transform(record)
            if output == "copy":
                out += format_copy_row([row[name] for name in names])
            elif output == "jsonl":
                out += (_json_object(row, names) + "\n").encode()
            else:
                out += _csv_line([row[name] for name in names])
            rows += 1
            if len(out) >= _FLUSH:
                sink.write(bytes(out))
                out.clear()
            if report and rows % _ROWS_BETWEEN_REPORTS == 0:
                report(rows)
    sink.write(bytes(out))
    if report:
        report(rows)
    return rows


def _csv_line(values: list[Any]) -> bytes:
    """Return a CSV line quoting every value, so NULL (empty, unquoted) and '' stay apart."""
    fields = (
        "" if value is None else '"' + _json_text(value).replace('"', '""') + '"'
        for value in values
    )
    return (",".join(fields) + "\n").encode()


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json_value_to_text(value) or ""


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the lines of a stream of chunks, splitting about 64 kB at a time."""
    pending: list[bytes] = []
    size = 0
    rest = b""
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= 1 << 16:
            parts = (rest + b"".join(pending)).split(b"\n")
            rest = parts.pop()
            yield from parts
            pending.clear()
            size = 0
    parts = (rest + b"".join(pending)).split(b"\n")
    rest = parts.pop()
    yield from parts
    if rest:
        yield rest


def _copy_rows(chunks: Iterable[bytes], columns: list[str]) -> Iterator[dict[str, Any]]:
    for line in _lines(chunks):
        yield dict(zip(columns, parse_copy_line(line), strict=True))


def _json_rows(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in _lines(chunks):
        row: dict[str, Any] = json.loads(unescape_copy_field(line), parse_float=Decimal)
        yield row


def _json_object(row: dict[str, Any], columns: list[str]) -> str:
    return "{" + ",".join(f"{json.dumps(name)}:{_json_value(row[name])}" for name in columns) + "}"


def _json_value(value: Any) -> str:
    """Return JSON for a value read with ``parse_float=Decimal``, numbers kept exact."""
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
