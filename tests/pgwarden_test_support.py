"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


def line_of(path: str | Path, marker: str) -> int:
    """Return the number of the only line of ``path`` holding ``marker`` (besides lookups)."""
    lines = [
        number
        for number, text in enumerate(Path(path).read_text().splitlines(), start=1)
        if marker in text and "line_of(" not in text
    ]
    assert len(lines) == 1, f"{marker!r} is on lines {lines} of {path}"
    return lines[0]


def flush_statistics(conn: Connection) -> None:
    """Make this session report its counters as soon as it goes idle (PostgreSQL 15+)."""
    if conn.dialect.server_version_info >= (15,):
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))


def run_counted(engine: Engine, *statements: str) -> None:
    """Run statements in one transaction whose counters reach the statistics views."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
        flush_statistics(conn)


def wait_until(engine: Engine, query: str, done: Callable[[Any], bool]) -> Any:
    """Poll ``query`` with fresh statistics until ``done`` holds for its value."""
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while True:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            value = conn.execute(sa.text(query)).scalar()
            conn.commit()
            if done(value):
                return value
            assert time.monotonic() < deadline, f"statistics never showed it: {query}"
            time.sleep(0.05)


def stat(table: str, column: str) -> str:
    """Return a query of one statistics column of ``table``."""
    return f"SELECT {column} FROM pg_stat_user_tables WHERE relname = '{table}'"


def drop_role(database: Engine, cluster: Engine, quoted: str) -> None:
    """Drop the role ``quoted``: its privileges in ``database``, then it from the cluster."""
    with database.begin() as conn:
        conn.execute(sa.text(f"DROP OWNED BY {quoted}"))
    database.dispose()
    with cluster.connect() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {quoted}"))


def scalar(url: str, query: str, **params: Any) -> Any:
    """Return the first value of ``query`` run on ``url`` on a connection of its own."""
    engine = sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"), poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def install_for(server: Any) -> Path | None:
    """Return the installation of the server under test's major: None for the wheel's.

    ``server`` is a :class:`pgwarden.testing.servers.TestServer`; a cluster the tests
    make themselves (a PITR source, a primary and its standby) runs the same major.
    """
    with server.admin.connect() as conn:
        major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    if server.embedded is not None or major == 18:
        return None
    return Path(f"/usr/lib/postgresql/{major}")


def autocommit_value(url: str, text: str) -> object:
    """Run ``text`` in autocommit on ``url`` (psycopg 3) and return its first value, if any."""
    engine = sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"),
        poolclass=sa.pool.NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(text))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def forbid_import(monkeypatch: Any, package: str, *importers: str) -> None:
    """Make ``package`` impossible to import, as on an install without its extra.

    ``importers`` are modules that imported it already: forgotten, so that importing
    them again meets the missing package.
    """
    import sys

    for name in list(sys.modules):
        if name == package or name.startswith(f"{package}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)
    for name in importers:
        monkeypatch.delitem(sys.modules, name, raising=False)
