"""What a downgrade's SQL drops, and which of it holds rows, for every legal name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hostile_names import HOSTILE
from pgwarden._sql import qualified, quote_identifier
from pgwarden.db.engines import create_engine
from pgwarden.schema.drops import data_losses, dropped_objects

MIXED = quote_identifier('Mixed "Case"', plain=True)
RENDERED = [
    "BEGIN;",
    "-- Running downgrade 0002 -> 0001",
    f'ALTER TABLE {MIXED} DROP COLUMN "select", ADD COLUMN x int, DROP COLUMN IF EXISTS y;',
    "DROP TABLE IF EXISTS app.orders, items CASCADE;",
    "DROP INDEX ix_orders;",
    "COMMIT;",
]


@pytest.fixture
def conn(pg_url: str) -> Iterator[sa.Connection]:
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def test_drops_are_found_in_rendered_sql() -> None:
    assert dropped_objects("\n".join(RENDERED)) == [
        (MIXED, "select"),
        (MIXED, "y"),
        ("app.orders", None),
        ("items", None),
    ]


def test_rows_are_counted_under_any_name(conn: sa.Connection) -> None:
    for number, name in enumerate(HOSTILE):
        schema = f"s{number}"
        other = "c" + name[:-1]  # another legal name, as long at most
        table, column = qualified(schema, name), quote_identifier(other)
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(sa.text(f"CREATE TABLE {table} ({column} int, e int)"))
        conn.execute(sa.text(f"INSERT INTO {table} ({column}) VALUES (1), (2), (NULL)"))
        conn.commit()
        where = qualified(schema, name, plain=True)
        sql = f"ALTER TABLE {where} DROP COLUMN {quote_identifier(other, plain=True)};"
        sql += f"ALTER TABLE {where} DROP COLUMN e; DROP TABLE {where}; DROP TABLE s.absent;"
        losses = data_losses(conn, sql)
        assert [(loss.table, loss.column, loss.rows) for loss in losses] == [
            (f"{schema}.{name}", other, 2),  # the NULL-only column e loses nothing
            (f"{schema}.{name}", None, 3),
        ], name
        assert not conn.in_transaction()  # no lock kept for the downgrade to wait on
