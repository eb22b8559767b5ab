"""The small table and statement the observe benchmarks run."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import TestServer

QUERY = sa.text("SELECT id, name FROM bench_item WHERE id = :id")


def items_database(server: TestServer) -> tuple[str, str]:
    """Create a database holding ``bench_item`` (100 rows); return its name and URL."""
    name = server.create_database()
    url = server.url(name)
    setup = create_engine(url, poolclass=NullPool)
    with setup.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench_item (id int PRIMARY KEY, name text)"))
        conn.execute(
            sa.text("INSERT INTO bench_item SELECT i, 'item ' || i FROM generate_series(1, 100) i")
        )
    setup.dispose()
    return name, url
