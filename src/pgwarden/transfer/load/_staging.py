"""Load a data file into a temporary staging table, as fast as COPY goes.

Every staging column is ``text``: a value that does not fit its target column (a bad
number, a string too long, a NULL in a NOT NULL column) then fails when it is merged,
where the merge can find the row and report its key, instead of aborting the load with
a line number. ``_pgw_n`` numbers the rows in file order, so merges go in batches by
range and a row can be reported by its line.

COPY files stream straight through COPY; JSONL lines go through COPY into a ``json``
column (not ``jsonb``, which would rewrite the text of a nested ``json`` value) and are
spread into columns by ``json_populate_record``; with transforms, rows
pass through Python (:mod:`pgwarden.transfer.copytext`) and back into COPY.

:class:`DirectLoad` is the fast path of an insert into an empty table: the same loads,
COPYed straight into the target (no staging table, no casts); when anything fails, the
import falls back to a :class:`Stage` for that table and finds the rows to blame.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier as quote
from pgwarden.transfer.copytext import (
    format_copy_row,
    json_value_to_text,
    load_json_line,
    parse_copy_line,
)
from pgwarden.transfer.load._clauses import column_list

__all__ = ["DirectLoad", "NotDirect", "RowTransform", "Stage", "internal_prefix"]

RowTransform = Callable[[dict[str, Any]], dict[str, Any] | None]

# COPY text escapes, applied to JSON lines so that COPY hands each one over unchanged.
_JSONL_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\r", b"\\r"))


def internal_prefix(columns: Iterable[str]) -> str:
    """Return the prefix of the columns pgwarden adds to a stage: none of ``columns`` has it.

    ``_pgw_``, unless a column of the user's starts with it; the same for the same columns.
    """
    prefix, number = "_pgw_", 0
    while any(column.startswith(prefix) for column in columns):
        number += 1
        prefix = f"_pgw{number}_"
    return prefix


class Stage:
    """A temporary table holding one table's incoming rows, numbered from 1.

    With ``types`` (each column's type, modifier and all, as the target declares it)
    the columns are typed: COPY reads each value with the target's own input function,
    so a value that loads is the value the target would hold, and merging it needs no
    cast. A value that does not fit fails the whole COPY; the caller then stages the
    rows again as text (no ``types``), to find the rows to blame as they are merged.
    JSONL lines are always staged as text (:class:`NotDirect` from a typed stage).

    Dropped at the end of the transaction, or by :meth:`drop`.
    """

    def __init__(
        self,
        conn: Connection,
        number: int,
        columns: Sequence[str],
        types: Mapping[str, str] | None = None,
    ) -> None:
        self.conn = conn
        self.number = number
        self.name = f"pgw_stage_{number}"
        self.columns = list(columns)
        self.internal = internal_prefix(self.columns)
        self.n = f"{self.internal}n"  # the row's number in the file
        self.typed = types is not None
        self.indexed = False
        self.rows = 0
        self.copied = 0  # rows the last COPY wrote
        definitions = ", ".join(
            f"{quote(c)} {types[c] if types is not None else 'text'}" for c in self.columns
        )
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {self.name} ({definitions}, "
            f"{self.n} bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
        )

    def _copy(self, sql: str, chunks: Iterable[bytes], on_rows: Callable[[int], None]) -> None:
        cursor = _raw(self.conn).cursor()
        with cursor.copy(sql) as copy:
            for chunk in chunks:
                copy.write(chunk)
                on_rows(chunk.count(b"\n"))
        self.copied = cursor.rowcount

    def load_copy(self, chunks: Iterable[bytes], on_rows: Callable[[int], None]) -> None:
        """Stream a COPY text file into the table."""
        self._copy(f"COPY {self.name} ({column_list(self.columns)}) FROM STDIN", chunks, on_rows)

    def load_jsonl(self, chunks: Iterable[bytes], on_rows: Callable[[int], None]) -> None:
        """Stream a JSONL file into the table, each line's keys into the columns they name."""
        if self.typed:
            # json_populate_record reads a JSON string into a json or composite column
            # as the string itself; text staging then casts it, which is right.
            raise NotDirect
        raw = f"{self.name}_raw"
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {raw} (line json, n bigint GENERATED ALWAYS AS IDENTITY)"
            " ON COMMIT DROP"
        )
        self._copy(f"COPY {raw} (line) FROM STDIN", _escaped(chunks), on_rows)
        self.copied = self.conn.exec_driver_sql(
            f"INSERT INTO {self.name} ({column_list(self.columns)})\n"
            f"SELECT {column_list(self.columns, 'r')}\n"
            f"FROM {raw} AS l\n"
            f"CROSS JOIN LATERAL json_populate_record(NULL::{self.name}, l.line) AS r\n"
            "WHERE l.line IS NOT NULL\n"
            "ORDER BY l.n"
        ).rowcount
        self.conn.exec_driver_sql(f"DROP TABLE {raw}")

    def load_csv(self, chunks: Iterable[bytes], on_rows: Callable[[int], None]) -> None:
        """Stream a CSV file with a header line; an unquoted empty field is NULL."""
        sql = (
            f"COPY {self.name} ({column_list(self.columns)}) FROM STDIN "
            "WITH (FORMAT csv, HEADER true)"
        )
        self._copy(sql, chunks, on_rows)

    def load_rows(self, rows: Iterable[dict[str, Any]], on_rows: Callable[[int], None]) -> None:
        """Load rows given as dicts of COPY text or JSON values (after transforms)."""
        columns = self.columns

        def lines() -> Iterator[bytes]:
            iterator = iter(rows)
            while batch := list(itertools.islice(iterator, 1000)):
                yield b"".join(
                    format_copy_row([json_value_to_text(row.get(c)) for c in columns])
                    for row in batch
                )

        self.load_copy(lines(), on_rows)

    def finish(self) -> int:
        """Return the number of rows loaded."""
        self.rows = self.copied
        return self.rows

    def index(self) -> None:
        """Index the row numbers and gather statistics, for merges by ranges of rows.

        An upsert or replace needs neither: it merges a change set of its own, and the
        unique index of its duplicate check gives the planner the row count.
        """
        if not self.indexed:
            self.conn.exec_driver_sql(f"CREATE INDEX ON {self.name} ({self.n})")
            self.conn.exec_driver_sql(f"ANALYZE {self.name}")
            self.indexed = True

    def drop(self) -> None:
        """Drop the table now rather than at commit."""
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.name}")


class NotDirect(Exception):
    """Raise when rows cannot be loaded this way (straight in, or typed): stage them as text."""


class DirectLoad(Stage):
    """The target table itself, loaded by the same COPYs as a stage (``name`` is its SQL).

    Only COPY, CSV and transformed rows go straight in; JSONL raises :class:`NotDirect`.
    It is never indexed, counted or dropped like a stage.
    """

    def __init__(self, conn: Connection, number: int, columns: Sequence[str], table: str) -> None:
        self.conn = conn
        self.number = number
        self.name = table
        self.columns = list(columns)
        self.internal = internal_prefix(self.columns)
        self.n = f"{self.internal}n"
        self.typed = self.indexed = True
        self.rows = 0
        self.copied = 0

    def load_jsonl(self, chunks: Iterable[bytes], on_rows: Callable[[int], None]) -> None:
        """Refuse: JSONL lines need a staging table to be spread into columns."""
        raise NotDirect

    def finish(self) -> int:
        """Return the rows the COPY wrote (the target is not a stage to index)."""
        self.rows = self.copied
        return self.rows

    def drop(self) -> None:
        """Do nothing: this is the target table."""


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection), "pgwarden.transfer needs psycopg 3"
    return driver


def _escaped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for old, new in _JSONL_ESCAPES:
            chunk = chunk.replace(old, new)
        yield chunk


def copy_rows(
    lines: Iterable[bytes], columns: Sequence[str], transform: RowTransform
) -> Iterator[dict[str, Any]]:
    """Yield the rows of COPY text ``lines`` as dicts, through ``transform`` (None drops one)."""
    for line in lines:
        if line:
            result = transform(dict(zip(columns, parse_copy_line(line), strict=True)))
            if result is not None:
                yield result


def jsonl_rows(lines: Iterable[bytes], transform: RowTransform) -> Iterator[dict[str, Any]]:
    """Yield the rows of JSONL ``lines`` as dicts, numbers exact, through ``transform``."""
    for line in lines:
        if line.strip():
            result = transform(load_json_line(line))
            if result is not None:
                yield result


def csv_header(head: bytes) -> list[str]:
    """Return the column names of a CSV file's first line."""
    text = head.decode("utf-8-sig")
    names = next(csv.reader(io.StringIO(text)), [])
    return [name.strip() for name in names]


def csv_rows(chunks: Iterable[bytes], transform: RowTransform) -> Iterator[dict[str, Any]]:
    """Yield the rows of a CSV file with a header as dicts (empty fields as None)."""
    text = io.TextIOWrapper(
        io.BufferedReader(_ChunkReader(chunks)), encoding="utf-8-sig", newline=""
    )
    for row in csv.DictReader(text):
        result = transform({k: (v if v != "" else None) for k, v in row.items()})
        if result is not None:
            yield result


class _ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
