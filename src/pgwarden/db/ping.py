"""Check a connection: server version, round-trip latency, and the extensions pgwarden uses."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["USEFUL_EXTENSIONS", "Extension", "PingResult", "extensions", "ping"]

# What each extension gives pgwarden, shown next to it so a user knows why to enable it.
USEFUL_EXTENSIONS: dict[str, str] = {
    "pg_stat_statements": "query statistics for top queries and the index advisor",
    "pgstattuple": "exact table and index bloat",
    "amcheck": "index and heap corruption checks",
    "hypopg": "hypothetical indexes for the index advisor",
    "pg_qualstats": "predicate statistics for the index advisor",
}

EXTENSIONS_SQL = sa.text(
    """
    SELECT
        wanted.name,
        installed.extversion AS installed_version,
        available.default_version AS available_version
    FROM unnest(CAST(:names AS text[])) AS wanted(name)
    LEFT JOIN pg_extension AS installed
        ON installed.extname = wanted.name
    LEFT JOIN pg_available_extensions AS available
        ON available.name = wanted.name
    ORDER BY array_position(CAST(:names AS text[]), wanted.name)
    """
)

SERVER_SQL = sa.text(
    """
    SELECT
        current_setting('server_version') AS version,
        current_setting('server_version_num')::int AS version_num,
        current_database() AS database,
        current_user AS user_name,
        pg_is_in_recovery() AS in_recovery
    """
)


@dataclass(frozen=True)
class Extension:
    """One extension pgwarden can use, and whether this database has it."""

    name: str
    purpose: str
    installed_version: str | None
    available_version: str | None
    preloaded: bool

    @property
    def state(self) -> str:
        """Return ``installed``, ``available`` (can be created) or ``missing``."""
        if self.installed_version:
            return "installed"
        return "available" if self.available_version else "missing"


@dataclass(frozen=True)
class PingResult:
    """What a connection to the server showed."""

    server_version: str
    server_version_num: int
    database: str
    user: str
    in_recovery: bool
    latency_ms: float
    extensions: list[Extension]

    @property
    def major(self) -> int:
        """Return the server's major version (15 for 15.4)."""
        return self.server_version_num // 10000


def extensions(conn: Connection, *, names: list[str] | None = None) -> list[Extension]:
    """Return whether each extension in ``names`` is installed, available or missing."""
    wanted = names or list(USEFUL_EXTENSIONS)
    preloaded_raw = conn.execute(sa.text("SELECT current_setting('shared_preload_libraries')"))
    preloaded = {item.strip() for item in str(preloaded_raw.scalar_one()).split(",")}
    rows = conn.execute(EXTENSIONS_SQL, {"names": wanted}).mappings()
    return [
        Extension(
            name=row["name"],
            purpose=USEFUL_EXTENSIONS.get(row["name"], ""),
            installed_version=row["installed_version"],
            available_version=row["available_version"],
            preloaded=row["name"] in preloaded,
        )
        for row in rows
    ]


def ping(conn: Connection, *, samples: int = 3) -> PingResult:
    """Measure the round trip of a trivial query and describe the server.

    The latency is the best of ``samples`` round trips of ``SELECT 1``: the floor the
    network and server put under every query.
    """
    timings = []
    for _ in range(max(1, samples)):
        started = time.perf_counter()
        conn.execute(sa.text("SELECT 1")).scalar_one()
        timings.append((time.perf_counter() - started) * 1000)
    server = conn.execute(SERVER_SQL).mappings().one()
    return PingResult(
        server_version=server["version"],
        server_version_num=server["version_num"],
        database=server["database"],
        user=server["user_name"],
        in_recovery=server["in_recovery"],
        latency_ms=round(min(timings), 3),
        extensions=extensions(conn),
    )
