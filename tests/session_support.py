"""Real sessions for the activity tests: idle, in a transaction, running, or blocked."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from pgwarden.db.engines import create_engine

T = TypeVar("T")

# Whatever a test does, no session of it waits longer than this.
TIMEOUT = "60s"


class Sessions:
    """Sessions on one database, all named by one application_name, ended after the test.

    ``open`` returns an idle connection and its pid; ``start`` runs a statement on it in
    a thread (for one that blocks or sleeps); ``observer`` reads in autocommit, so each
    read of ``pg_stat_activity`` is a fresh one.
    """

    def __init__(self, url: str, *, prefix: str = "pgwarden-activity") -> None:
        self.url = url
        self.application = f"{prefix}-{secrets.token_hex(4)}"
        self.engine = create_engine(url, application_name=self.application, poolclass=NullPool)
        self.pids: list[int] = []
        self._connections: list[Connection] = []
        self._threads = ThreadPoolExecutor(max_workers=8)

    def open(self, url: str | None = None) -> tuple[Connection, int]:
        """Open an idle session (on ``url``, to log in as another role) and return its pid."""
        engine = self.engine
        if url is not None:
            engine = create_engine(url, application_name=self.application, poolclass=NullPool)
        conn = engine.connect()
        conn.execute(sa.text(f"SET statement_timeout = '{TIMEOUT}'"))
        conn.execute(sa.text(f"SET lock_timeout = '{TIMEOUT}'"))
        pid: int = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        self._connections.append(conn)
        self.pids.append(pid)
        return conn, pid

    def start(self, conn: Connection, statement: str) -> Future[Any]:
        """Run ``statement`` on ``conn`` in a thread; the future holds its rows or row count."""

        def execute() -> Any:
            result = conn.execute(sa.text(statement))
            return result.all() if result.returns_rows else result.rowcount

        return self._threads.submit(execute)

    def observer(self) -> Connection:
        """Return a connection of this application that reads in autocommit."""
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._connections.append(conn)
        return conn

    def close(self) -> None:
        """End every session this made, then wait for the threads that ran on them."""
        with self.engine.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid = ANY (:pids) AND pid <> pg_backend_pid()"),
                {"pids": self.pids},
            )  # fmt: skip
            conn.commit()
        self._threads.shutdown(wait=True)
        for conn in self._connections:
            with contextlib.suppress(sa.exc.DBAPIError):  # terminated above
                conn.close()
        self.engine.dispose()


def wait_for(probe: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Return ``probe()`` once it is truthy; fail the test if that takes over ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
