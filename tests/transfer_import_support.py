"""Helpers of the import, rollback and erase tests: bundles written by plain COPY, checksums.

:func:`write_bundle` builds a bundle the way the format says (``COPY ... TO STDOUT``
into the data files, then the manifest), without the export code, so the import tests
do not depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from pgwarden._sql import qualified as qualified_name
from pgwarden._sql import quote_identifier as quote
from pgwarden._sql import split_table_key
from pgwarden.transfer import BundleTable
from pgwarden.transfer.bundle import Format
from pgwarden.transfer.catalog import load_catalog
from pgwarden.transfer.export.bundle_files import DataFile, write_manifest

# Migration bookkeeping: a migrated target has its own row already.
NOT_DATA = {"public.alembic_version"}


def engine(url: str) -> Engine:
    """Return an engine on ``url`` through psycopg, without a pool."""
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool
    )


@contextmanager
def connection(url: str) -> Iterator[Connection]:
    """Yield a connection to ``url``, closed after."""
    eng = engine(url)
    try:
        with eng.connect() as conn:
            yield conn
    finally:
        eng.dispose()


def run(url: str, *statements: str, **params: Any) -> None:
    """Run ``statements`` in one committed transaction."""
    eng = engine(url)
    try:
        with eng.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)
    finally:
        eng.dispose()


def scalar(url: str, query: str, **params: Any) -> Any:
    """Return the one value ``query`` selects."""
    with connection(url) as conn:
        return conn.execute(sa.text(query), params).scalar()


def user_tables(conn: Connection) -> list[str]:
    """Return every table outside the system schemas and ``pgwarden``, as ``schema.name``."""
    return sorted(name for name in load_catalog(conn).tables if not name.startswith("pgwarden."))


def data_tables(conn: Connection) -> list[str]:
    """Return the user tables that hold the application's data (not its migration state)."""
    return [name for name in user_tables(conn) if name not in NOT_DATA]


def checksums(url: str) -> dict[str, str]:
    """Return md5 over the ordered rows of every user table, by ``schema.name``."""
    result = {}
    with connection(url) as conn:
        for name in user_tables(conn):
            query = (
                f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                f" FROM {qualified_name(*split_table_key(name))} AS t"
            )
            result[name] = conn.execute(sa.text(query)).scalar_one()
    return result


def counts(url: str) -> dict[str, int]:
    """Return the row count of every user table."""
    with connection(url) as conn:
        return {
            name: conn.execute(
                sa.text(f"SELECT count(*) FROM {qualified_name(*split_table_key(name))}")
            ).scalar_one()
            for name in user_tables(conn)
        }


def write_bundle(
    url: str,
    out: Path,
    *,
    tables: Sequence[str] | None = None,
    where: dict[str, str] | None = None,
    order_by: dict[str, str] | None = None,
    format: Format = "copy",
) -> Path:
    """Write a bundle of ``tables`` (default: every user table) of ``url`` into ``out``.

    ``where`` maps a table to a SQL condition choosing its rows, ``order_by`` to the
    order of its rows in the file (tests write both).
    """
    where, order_by = where or {}, order_by or {}
    with connection(url) as conn:
        catalog = load_catalog(conn)
        names = list(tables) if tables is not None else data_tables(conn)
        order, cycles = catalog.dependency_order(names)
        written = []
        for name in order:
            table = catalog.tables[name]
            columns = ", ".join(quote(c.name) for c in table.columns)
            select = f"SELECT {columns} FROM {qualified_name(table.schema, table.name)}"
            if name in where:
                select += f" WHERE {where[name]}"
            if name in order_by:
                select += f" ORDER BY {order_by[name]}"
            with DataFile(out, table.schema, table.name, format) as data:
                if format == "copy":
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    with raw.cursor().copy(f"COPY ({select}) TO STDOUT") as copy:
                        for chunk in copy:
                            data.write(chunk)
                else:
                    for line in _json_lines(conn, select, table.columns):
                        data.write(line)
            written.append(
                BundleTable(
                    schema=table.schema,
                    name=table.name,
                    columns=table.columns,
                    primary_key=table.primary_key,
                    foreign_keys=table.foreign_keys,
                    file=data.file,
                    format=format,
                    rows=data.rows,
                    bytes=data.bytes,
                    sha256=data.sha256,
                )
            )
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    write_manifest(
        out, source_database=database, server_version=version, tables=written, order=order,
        cycles=cycles,
    )  # fmt: skip
    return out


def _json_lines(conn: Connection, select: str, columns: Any) -> Iterator[bytes]:
    """Yield JSONL rows: JSON-native booleans, numbers and json; other values as printed."""
    native = {"boolean", "bigint", "integer", "smallint", "json", "jsonb"}
    casts = ", ".join(
        f"t.{quote(c.name)}" if c.type in native else f"t.{quote(c.name)}::text" for c in columns
    )
    for row in conn.execute(sa.text(f"SELECT {casts} FROM ({select}) AS t")):
        values = dict(zip([c.name for c in columns], row, strict=True))
        yield (json.dumps(values, ensure_ascii=False) + "\n").encode()
