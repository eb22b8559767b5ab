"""Stream rows out of PostgreSQL with COPY TO STDOUT, and re-emit them transformed.

Rows never gather in memory: :class:`CopyOut` takes the server's CopyData messages (one
a row) off the connection as many at a time as have arrived, and hands them over in
chunks of whole lines of up to 1 MiB, which go to the file in one write each. A table
without transforms is copied byte for byte. A COPY text table with transforms is
rewritten a chunk at a time (:mod:`pgwarden.transfer.anonymize._rewrite`): the lines
are split on tabs (at C speed), each changed column goes through its function as one
list, and the lines are joined again; other formats (JSONL, CSV output) are parsed row by row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg import generators as pg_generators
from psycopg.pq import ExecStatus
from psycopg.waiting import Wait
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden.errors import UserError
from pgwarden.transfer.anonymize._rewrite import rewritten
from pgwarden.transfer.anonymize.transforms import TableTransform
from pgwarden.transfer.bundle import BundleColumn
from pgwarden.transfer.copytext import (
    format_copy_row,
    json_value_to_text,
    load_json_line,
    parse_copy_line,
    unescape_copy_field,
)
from pgwarden.transfer.export.bundle_files import DataFile

__all__ = [
    "CHUNK_SIZE",
    "SESSION_SETTINGS",
    "CopyOut",
    "Sink",
    "copy_statement",
    "copy_table_statement",
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

# Types JSONL keeps as JSON values; every other type goes as text. ``json`` and ``jsonb``
# go as text too: as JSON values, a JSON ``null`` would read back as SQL NULL.
_JSON_NATIVE = ("boolean", "smallint", "integer", "bigint", "real", "double precision")
_FLUSH = 1 << 20
_ROWS_BETWEEN_REPORTS = 10_000
# What CopyOut gathers before handing a chunk on: big enough that the Python work per
# chunk vanishes, small enough to stay in cache while a transform rewrites it.
CHUNK_SIZE = 1 << 18


class Sink(Protocol):
    """Where rows go: a :class:`~pgwarden.transfer.export.bundle_files.DataFile` or a plain file."""

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
        native = column.type in _JSON_NATIVE or re.fullmatch(
            r"numeric(\(\d+,-?\d+\))?", column.type
        )
        if fmt == "jsonl" and not native:
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
        # ``pgw_row.*`` names the row even when a column is called pgw_row.
        return f"COPY (SELECT row_to_json(pgw_row.*) FROM ({select}) AS pgw_row) TO STDOUT"
    if fmt == "csv":
        return f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)"
    return f"COPY ({select}) TO STDOUT"


def copy_table_statement(schema: str, name: str, columns: Sequence[str]) -> str:
    """Return ``COPY schema.name (columns) TO STDOUT``: a whole plain table in COPY text.

    Cheaper for the server than ``COPY (SELECT ...)``, and the same bytes.
    """
    names = ", ".join(quote(column) for column in columns)
    return f"COPY {quote(schema)}.{quote(name)} ({names}) TO STDOUT"


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
    """Iterate over what ``COPY ... TO STDOUT`` sends; ``rows`` is the server's count after.

    Yields chunks of whole lines (``chunk_size`` bytes or so), not one message a row:
    the messages that have arrived are taken off the connection in one tight loop, so
    the client spends a fraction of the server's time per row.
    """

    def __init__(self, conn: Connection, statement: str, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.conn = conn
        self.statement = statement
        self.chunk_size = chunk_size
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        dbapi = self.conn.connection.dbapi_connection
        if not isinstance(dbapi, psycopg.Connection):
            raise TypeError("COPY needs a psycopg 3 connection (postgresql+psycopg://)")
        with dbapi.cursor() as cursor, cursor.copy(self.statement) as copy:
            if not _can_drain(copy):
                for data in copy:
                    yield bytes(data)
                self.rows = max(cursor.rowcount, 0)
                return
            encoding = dbapi.info.encoding
            while True:
                chunk, result = dbapi.wait(_drain(dbapi.pgconn, self.chunk_size))
                if chunk:
                    yield chunk
                if result is not None:
                    break
            # The final result is taken: tell psycopg's Copy the COPY is over.
            copy._finished = True
            if result.status != ExecStatus.COMMAND_OK:
                raise pg_errors.error_from_result(result, encoding=encoding)
            self.rows = result.command_tuples or 0


def _can_drain(copy: Any) -> bool:
    """Return whether this psycopg has the internals :func:`_drain` relies on."""
    return hasattr(copy, "_finished") and hasattr(pg_generators, "fetch_many")


def _drain(pgconn: Any, limit: int) -> Any:
    """A psycopg wait generator: gather COPY messages until ``limit`` bytes or the end.

    Returns ``(chunk, None)``, or ``(chunk, result)`` once the COPY is over, ``result``
    being its final PGresult. Waits for the socket only when no whole message is left
    in libpq's buffer.
    """
    parts: list[Any] = []
    size = 0
    get = pgconn.get_copy_data
    while size < limit:
        nbytes, data = get(1)
        if nbytes > 0:
            parts.append(data)
            size += nbytes
        elif nbytes == 0:
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
        else:
            results = yield from pg_generators.fetch_many(pgconn)
            if len(results) != 1:
                raise psycopg.ProgrammingError("COPY ended with more than one result")
            return b"".join(parts), results[0]
    return b"".join(parts), None


def stream_rows(
    chunks: Iterable[bytes],
    sink: Sink,
    *,
    fmt: str,
    columns: list[str],
    transform: TableTransform | None,
    output: str | None = None,
    report: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> int:
    """Write ``chunks`` of COPY output in ``fmt`` to ``sink``; return the lines written.

    With a ``transform``, rows are parsed, transformed and written in ``output`` (by
    default ``fmt``; ``csv`` from COPY text input). ``report(rows)`` is called every
    10,000 rows or 1 MiB or so, and at the end. COPY text to COPY text is rewritten a
    chunk at a time, past 4 MiB by ``workers`` forked processes (``None``: on Linux one
    a CPU less one, when that is two or more; 0 or 1: none).
    """
    iterator = iter(chunks)
    try:
        return _stream(iterator, sink, fmt, columns, transform, output, report, workers)
    finally:
        # An error here must not leave a COPY running under a suspended generator: the
        # rollback that follows would wait for it forever. Closing it cancels the COPY.
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _stream(
    chunks: Iterator[bytes],
    sink: Sink,
    fmt: str,
    columns: list[str],
    transform: TableTransform | None,
    output: str | None,
    report: Callable[[int], None] | None,
    workers: int | None,
) -> int:
    copy_to_copy = fmt == "copy" and (output or fmt) == "copy"
    if transform is not None and not transform.identity:
        if not copy_to_copy:
            return _transformed(
                chunks, sink, fmt=fmt, output=output or fmt, columns=columns,
                transform=transform, report=report,
            )  # fmt: skip
        if transform.copy_fields:  # renames alone change no COPY text: copied as it comes
            return rewritten(chunks, sink, transform.copy_fields, report=report, workers=workers)
    buffer = bytearray()
    pending: list[bytes] = []
    size = unreported = rows = 0
    # A DataFile counts the lines it is given: its count saves counting them twice.
    file = sink if isinstance(sink, DataFile) else None
    before = file.rows if file is not None else 0
    for chunk in chunks:
        if fmt == "jsonl":
            buffer += chunk
            if len(buffer) >= _FLUSH:
                rows += _flush(buffer, sink, fmt)
                if report:
                    report(rows)
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= CHUNK_SIZE:  # CopyOut's chunks go as they come; single rows gather
            data = chunk if len(pending) == 1 else b"".join(pending)
            pending.clear()
            sink.write(data)
            rows += data.count(b"\n") if file is None else 0
            unreported += size
            size = 0
            if report and unreported >= _FLUSH:
                unreported = 0
                report(rows if file is None else file.rows - before)
    if pending:
        data = b"".join(pending)
        sink.write(data)
        rows += data.count(b"\n") if file is None else 0
    rows += _flush(buffer, sink, fmt)
    if file is not None:
        rows = file.rows - before
    if report:
        report(rows)
    return rows


def _flush(buffer: bytearray, sink: Sink, fmt: str) -> int:
    if not buffer:
        return 0
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
    encoded: Iterable[bytes]
    if fmt == "copy" and output in ("copy", "csv"):
        # The hot path: lists of values in column order, no dict per row.
        emit = format_copy_row if output == "copy" else _csv_line
        encoded = (emit(transform.apply(parse_copy_line(line))) for line in _lines(chunks))
    else:
        records = _json_rows(chunks) if fmt == "jsonl" else _copy_rows(chunks, columns)
        encoded = (_encoded(transform(record), names, output) for record in records)
    for line in encoded:
        out += line
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


def _encoded(row: dict[str, Any], names: list[str], output: str) -> bytes:
    """Return one transformed row as a line of ``output`` (copy, jsonl or csv)."""
    if output == "copy":
        return format_copy_row([row[name] for name in names])
    if output == "jsonl":
        return (_json_object(row, names) + "\n").encode()
    return _csv_line([row[name] for name in names])


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
        row: dict[str, Any] = load_json_line(unescape_copy_field(line))
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
