"""Helpers of the maintenance tests (library and CLI): a database to set up and inspect.

Each call opens and closes its own connection: a backend sends its table statistics
(dead tuples) when it ends, so what a call changed shows in pg_stat_user_tables soon
after, and :meth:`Database.wait_for` waits until it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool


class Database:
    """A test database, reached with a fresh autocommit connection per call."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )

    def run(self, *statements: str) -> None:
        """Run each statement on its own, in autocommit."""
        with self.engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def scalar(self, query: str, **params: Any) -> Any:
        """Return the one value ``query`` selects."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()

    def stat(self, table: str, column: str) -> Any:
        """Return one column of ``table``'s row in pg_stat_user_tables."""
        assert column.isidentifier()
        return self.scalar(
            f"SELECT {column} FROM pg_stat_user_tables WHERE relid = to_regclass(:t)", t=table
        )

    def filenode(self, relation: str) -> int:
        """Return the file the relation's data lives in now (a rewrite changes it)."""
        return int(self.scalar("SELECT pg_relation_filenode(to_regclass(:r))", r=relation))

    def dead_tuples(self, table: str) -> int:
        """Return pgstattuple's exact count of dead tuples in ``table``."""
        self.run("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        return int(
            self.scalar("SELECT dead_tuple_count FROM pgstattuple(to_regclass(:t))", t=table)
        )

    def bloated(self, table: str, *, rows: int, deleted: int) -> None:
        """Create ``table`` with ``rows`` rows and delete ``deleted`` of them.

        Autovacuum is off for it, so its dead tuples stay until a test vacuums them;
        returns once the statistics show them.
        """
        self.run(
            f"CREATE TABLE {table} (id int PRIMARY KEY, body text) "
            "WITH (autovacuum_enabled = false)",
            f"INSERT INTO {table} SELECT g, repeat('x', 100) FROM generate_series(1, {rows}) g",
            f"DELETE FROM {table} WHERE id <= {deleted}",
        )
        self.wait_for(lambda: (self.stat(table, "n_dead_tup") or 0) >= deleted)

    def wait_for(self, condition: Callable[[], Any], *, timeout: float = 30.0) -> Any:
        """Return ``condition()`` once it is true; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            assert time.monotonic() < deadline, "condition never became true"
            time.sleep(0.05)
        return result

    def slow_vacuums(self) -> None:
        """Make each VACUUM of this database's new sessions crawl, pausing after every page.

        A vacuum of a table of a few hundred pages then spends minutes scanning it, so
        a test can read its progress at leisure, then cancel it.
        """
        name = sa.make_url(self.url).database
        assert name is not None and name.isidentifier()
        self.run(
            f"ALTER DATABASE {name} SET vacuum_cost_delay = 100",
            f"ALTER DATABASE {name} SET vacuum_cost_limit = 1",
        )

    def cancel(self, pid: int) -> None:
        """Cancel the statement backend ``pid`` is running."""
        assert self.scalar("SELECT pg_cancel_backend(:pid)", pid=pid)

    @contextmanager
    def transaction(self, *statements: str, isolation: str = "READ COMMITTED") -> Iterator[int]:
        """Hold a transaction open that ran ``statements``; yield its backend pid."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level=isolation)
            with conn.begin() as tx:
                pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
                for statement in statements:
                    conn.exec_driver_sql(statement)
                yield pid
                tx.rollback()

    def connect(self) -> Connection:
        """Return a new connection, not in autocommit (pgwarden switches it)."""
        return self.engine.connect().execution_options(isolation_level="READ COMMITTED")

    def dispose(self) -> None:
        self.engine.dispose()
