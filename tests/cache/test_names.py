"""Every legal table name is told apart, whichever way a write names it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden._sql import quote_identifier
from pgwarden.cache import QueryCache, cached

NAMES = ["select", 'Mixed "Case"', "a%b", "%(x)s", ":x", "O'Reilly", "ünï", "t.u"]


@pytest.mark.parametrize("schema", [None, "S p"])
def test_raw_sql_writes_invalidate_tables_with_hostile_names(
    cache: QueryCache, engine: Engine, schema: str | None
) -> None:
    metadata = sa.MetaData(schema=schema)
    tables = [sa.Table(n, metadata, sa.Column("v", sa.Integer)) for n in NAMES]
    with engine.begin() as conn:
        if schema:
            conn.execute(sa.text(f"CREATE SCHEMA {quote_identifier(schema)}"))
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.insert(table).values(v=0))

    def read(table: sa.Table) -> int:
        with engine.connect() as conn:
            return int(cache.execute(conn, sa.select(table.c.v).options(cached())).scalar_one())

    for table in tables:
        assert read(table) == 0
    for n, table in enumerate(tables, start=1):
        qualified = quote_identifier(table.name)
        if schema:
            qualified = f"{quote_identifier(schema)}.{qualified}"
        with engine.begin() as conn:
            sql = f"UPDATE {qualified} SET v = :v".replace("%", "%%").replace(":x", "\\:x")
            conn.execute(sa.text(sql.replace("\\:v", ":v")), {"v": n})
        # The table written is invalidated, and no other.
        assert [read(t) for t in tables] == [i if i <= n else 0 for i in range(1, len(NAMES) + 1)]
    assert cache.stats().hits >= len(NAMES)
