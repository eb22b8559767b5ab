"""Count a server's client connections by state and source, against the slots it has.

When every slot of ``max_connections`` is taken, the next connection fails with "too
many clients". :func:`connection_usage` shows how close the server is and who holds
the slots::

    with engine.connect() as conn:
        usage = connection_usage(conn)
    print(f"{usage.connections} of {usage.available} ({usage.fraction_used:.0%})")
    print(usage.by_state, usage.count_by("application"))

The count covers the whole server, whichever database the connection is on. A member
of ``pg_monitor`` sees every session's state and source; other roles see the state of
their own sessions only, and the rest counted as ``"unknown"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.insight.findings import Finding

__all__ = [
    "ConnectionSource",
    "ConnectionUsage",
    "connection_findings",
    "connection_usage",
]


@dataclass(frozen=True)
class ConnectionSource:
    """The client sessions of one database, role, application and client address.

    ``client`` is an address, ``"local"`` for a Unix socket, or ``None`` where the role
    may not see it.
    """

    database: str | None
    user: str | None
    application: str | None
    client: str | None
    connections: int
    by_state: dict[str, int]


@dataclass(frozen=True)
class ConnectionUsage:
    """The client connections of a server, against the slots it has.

    ``reserved_connections`` are kept for superusers (and, from PostgreSQL 16, for
    members of ``pg_use_reserved_connections``); ``available`` is what other roles may
    use. ``sources`` is sorted by connections, most first.
    """

    connections: int
    max_connections: int
    reserved_connections: int
    by_state: dict[str, int]
    sources: list[ConnectionSource]

    @property
    def available(self) -> int:
        """Return the number of slots that roles without a reservation may use."""
        return self.max_connections - self.reserved_connections

    @property
    def fraction_used(self) -> float:
        """Return the share of the available slots in use (past 1 when reserves are used)."""
        return self.connections / max(self.available, 1)

    def count_by(self, key: Literal["database", "user", "application", "client"]) -> dict[str, int]:
        """Return the connections per database, role, application or client, most first."""
        counts: dict[str, int] = {}
        for source in self.sources:
            name = getattr(source, key) or "-"
            counts[name] = counts.get(name, 0) + source.connections
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# Only client backends take a max_connections slot: WAL senders, autovacuum and
# background workers have their own. reserved_connections is new in PostgreSQL 16.
CONNECTION_USAGE = text(
    """
WITH settings AS (
  SELECT current_setting('max_connections')::int AS max_connections,
         current_setting('superuser_reserved_connections')::int
           + COALESCE(current_setting('reserved_connections', true)::int, 0)
           AS reserved_connections
),
grouped AS (
  SELECT a.datname AS database,
         a.usename AS "user",
         a.application_name AS application,
         CASE WHEN a.client_port = -1 THEN 'local' ELSE host(a.client_addr) END AS client,
         COALESCE(a.state, 'unknown') AS state,
         count(*)::int AS connections
  FROM pg_stat_activity AS a
  WHERE a.backend_type = 'client backend'
  GROUP BY 1, 2, 3, 4, 5
)
SELECT s.max_connections,
       s.reserved_connections,
       g.database,
       g."user",
       g.application,
       g.client,
       g.state,
       g.connections
FROM settings AS s
LEFT JOIN grouped AS g ON true
"""
)


def connection_usage(conn: Connection) -> ConnectionUsage:
    """Return the server's client connections by state and by source, against its slots.

    The caller's own session is counted: it takes a slot like any other.
    """
    rows = conn.execute(CONNECTION_USAGE).all()
    by_state: dict[str, int] = {}
    sources: dict[tuple[str | None, str | None, str | None, str | None], dict[str, int]] = {}
    for row in rows:
        if row.connections is None:  # the settings row alone: no session visible
            continue
        by_state[row.state] = by_state.get(row.state, 0) + row.connections
        states = sources.setdefault((row.database, row.user, row.application, row.client), {})
        states[row.state] = states.get(row.state, 0) + row.connections
    listed = [
        ConnectionSource(
            database, user, application, client, sum(states.values()), _most_first(states)
        )
        for (database, user, application, client), states in sources.items()
    ]
    listed.sort(key=lambda s: (-s.connections, *(str(part) for part in _key(s))))
    return ConnectionUsage(
        connections=sum(by_state.values()),
        max_connections=rows[0].max_connections,
        reserved_connections=rows[0].reserved_connections,
        by_state=_most_first(by_state),
        sources=listed,
    )


def connection_findings(
    usage: ConnectionUsage, *, warning: float = 0.8, critical: float = 0.95
) -> list[Finding]:
    """Return a finding when the connections in use pass ``warning`` (a fraction) of the slots.

    Critical from ``critical`` on. The finding names the states and the sources that
    hold the most slots, since the fix is usually in the applications' pools.
    """
    if usage.fraction_used < warning:
        return []
    idle = usage.by_state.get("idle", 0)
    top = usage.sources[:5]
    why = (
        f"At {usage.available} connections, the next one fails with 'too many clients' "
        f"(only superusers may use the {usage.reserved_connections} reserved slots)."
    )
    if idle * 2 >= usage.connections:
        why += (
            f" {idle} of them are idle: the applications' pools hold more than they use. "
            "Shrink the pools, put a pooler such as PgBouncer in front, or end idle "
            "sessions with idle_session_timeout (PostgreSQL 14+)."
        )
    else:
        why += " Most are busy: look for slow queries holding connections, or add a pooler."
    return [
        Finding(
            check="connection_usage",
            severity="critical" if usage.fraction_used >= critical else "warning",
            what=f"{usage.connections} of {usage.available} connection slots in use "
            f"({usage.fraction_used:.0%}); most from "
            + ", ".join(f"{_source(s)} ({s.connections})" for s in top[:3]),
            why=why,
            fix=None,
            subject=None,
            details={
                "connections": usage.connections,
                "available": usage.available,
                "max_connections": usage.max_connections,
                "reserved_connections": usage.reserved_connections,
                "by_state": usage.by_state,
                "top_sources": [
                    {
                        "database": s.database,
                        "user": s.user,
                        "application": s.application,
                        "client": s.client,
                        "connections": s.connections,
                        "by_state": s.by_state,
                    }
                    for s in top
                ],
            },
        )
    ]


def _source(source: ConnectionSource) -> str:
    application = source.application or "no application name"
    return f"{application} as {source.user or '?'} on {source.database or '?'}"


def _key(source: ConnectionSource) -> tuple[str | None, ...]:
    return (source.database, source.user, source.application, source.client)


def _most_first(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
