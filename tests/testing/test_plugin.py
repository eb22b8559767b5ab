from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.testing.servers import TestServer


def test_each_test_gets_a_fresh_database(pg_engine: Engine, pg_server: TestServer) -> None:
    with pg_engine.begin() as conn:
        tables = conn.execute(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        assert tables.scalar_one() == 0
        conn.execute(sa.text("CREATE TABLE scratch (id int)"))
        name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    assert name.startswith("pgwarden_test_")
    assert name != pg_server.template


def test_a_second_test_does_not_see_the_first_ones_tables(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('scratch')")).scalar_one() is None


def test_databases_are_dropped_after_use(pg_server: TestServer) -> None:
    name = pg_server.create_database()
    pg_server.drop_database(name)
    with pg_server.admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        assert exists.first() is None
