"""Servers and throwaway databases for tests, with or without pytest."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from pgwarden._sql import quote_identifier
from pgwarden.db._ports import free_port
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.urls import parse_database_url

__all__ = ["TestServer", "free_port", "start_test_server"]


@dataclass
class TestServer:
    """A server tests may create and drop databases on."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    admin_url: URL
    embedded: EmbeddedServer | None = None
    template: str = field(default_factory=lambda: f"pgwarden_tpl_{secrets.token_hex(4)}")
    _admin: Engine | None = None

    @property
    def admin(self) -> Engine:
        """Return an autocommit engine on the server's maintenance database."""
        if self._admin is None:
            self._admin = sa.create_engine(
                self.admin_url.set(drivername="postgresql+psycopg"),
                poolclass=NullPool,
                isolation_level="AUTOCOMMIT",
            )
        return self._admin

    def url(self, database: str) -> str:
        """Return the URL of ``database`` on this server, password included."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create_database(self, *, template: str | None = None) -> str:
        """Create a database cloned from ``template`` (the session's) and return its name."""
        name = f"pgwarden_test_{secrets.token_hex(6)}"
        source = template or self.template
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    f"CREATE DATABASE {quote_identifier(name)} TEMPLATE {quote_identifier(source)}"
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still connected to it."""
        with self.admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)"))

    def close(self) -> None:
        """Drop the session's template and release the admin engine."""
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(f"DROP DATABASE IF EXISTS {quote_identifier(self.template)} WITH (FORCE)")
            )
        self.admin.dispose()


@contextmanager
def start_test_server(dsn: str | None = None) -> Iterator[TestServer]:
    """Yield a test server: the one at ``dsn``, else an embedded one made for the purpose.

    The embedded server lives in a fresh temporary directory and is stopped and removed
    on exit, whatever happened inside.
    """
    workdir: Path | None = None
    embedded: EmbeddedServer | None = None
    try:
        if dsn:
            url = parse_database_url(dsn, source="PGWARDEN_TEST_DSN")
        else:
            workdir = Path(tempfile.mkdtemp(prefix="pgwarden-test-"))
            # The server may run as another user (when we are root): let it in.
            os.chmod(workdir, 0o711)  # noqa: S103 - search only, no listing
            embedded = EmbeddedServer(workdir / "data", port=free_port())
            embedded.start()
            url = parse_database_url(embedded.url())
        server = TestServer(admin_url=url, embedded=embedded)
        with server.admin.connect() as conn:
            conn.execute(
                sa.text(f"CREATE DATABASE {quote_identifier(server.template)} TEMPLATE template0")
            )
        try:
            yield server
        finally:
            server.close()
    finally:
        if embedded is not None:
            embedded.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
