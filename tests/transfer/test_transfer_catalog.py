"""What the transfer catalog counts as data."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.transfer.catalog import load_catalog


def test_pgwarden_own_schema_is_not_data(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA pgwarden"))
        conn.execute(sa.text("CREATE TABLE pgwarden.import_journal (id int PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE pgwarden_data (id int PRIMARY KEY)"))
    with pg_engine.connect() as conn:
        catalog = load_catalog(conn)
    names = set(catalog.tables)
    assert "public.pgwarden_data" in names
    assert not any(name.startswith("pgwarden.") for name in names)
