"""Find the sessions that hurt: queries running long, transactions left idle and open.

Each function is one query on ``pg_stat_activity`` for the current database, leaving
out the caller's own session::

    with engine.connect() as conn:
        for session in long_running_queries(conn, min_duration_s=300):
            print(session.pid, session.user, session.duration_s, session.query)
        results = check_activity(conn, long_running_s=300)

:data:`CHECKS` holds the four checks of the area: these two, the blocked queries of
:mod:`~pgwarden.insight.blocking` and the connection count of
:mod:`~pgwarden.insight.connections` (the one check of the four that covers the whole
server). :func:`sessions` is the listing behind ``pgwarden queries``.

A member of ``pg_monitor`` sees every session's query (through ``pg_read_all_stats``);
other roles see the query text of their own sessions only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier
from pgwarden.insight.blocking import blocked_queries, blocked_query_findings
from pgwarden.insight.connections import connection_findings, connection_usage
from pgwarden.insight.findings import Check, CheckResult, Finding, run_checks
from pgwarden.insight.sessions import (
    SESSION_COLUMNS,
    format_duration,
    rounded,
    severity,
    short,
    who,
)

__all__ = [
    "ServerSession",
    "check_activity",
    "idle_in_transaction",
    "idle_transaction_findings",
    "long_running_queries",
    "long_running_query_findings",
    "sessions",
]

_OPEN_STATES = [
    "active",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
]


@dataclass(frozen=True)
class ServerSession:
    """One server process as ``pg_stat_activity`` shows it.

    ``duration_s`` is the time in the current state: how long the query has run for an
    active session, how long it has sat idle otherwise. ``blocked_by`` lists the pids
    holding a lock it waits for. ``client`` is an address, ``"local"`` for a Unix
    socket, or ``None`` for a background process or a row the role may not read.
    """

    pid: int
    user: str | None
    database: str | None
    application: str | None
    client: str | None
    backend_type: str | None
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    backend_start: dt.datetime | None
    xact_start: dt.datetime | None
    query_start: dt.datetime | None
    duration_s: float | None
    xact_age_s: float | None
    blocked_by: list[int]
    leader_pid: int | None
    query: str | None


SESSIONS = text(
    f"""
SELECT *
FROM (
  SELECT {SESSION_COLUMNS}
  FROM pg_stat_activity AS a
  WHERE a.pid <> pg_backend_pid()
    AND (:all_databases OR a.datname = current_database())
    AND (:include_background OR a.backend_type = 'client backend')
    AND (CAST(:states AS text[]) IS NULL OR a.state = ANY (CAST(:states AS text[])))
) AS s
WHERE COALESCE(s.duration_s, 0) >= :min_duration_s
ORDER BY s.duration_s DESC NULLS LAST, s.pid
"""
)


def _sessions(
    conn: Connection,
    *,
    states: list[str] | None,
    min_duration_s: float,
    all_databases: bool = False,
    include_background: bool = False,
) -> list[ServerSession]:
    rows = conn.execute(
        SESSIONS,
        {
            "states": states,
            "min_duration_s": min_duration_s,
            "all_databases": all_databases,
            "include_background": include_background,
        },
    )
    return [ServerSession(**row._mapping) for row in rows]


def sessions(
    conn: Connection,
    *,
    running: bool = False,
    min_duration_s: float = 0.0,
    everything: bool = False,
) -> list[ServerSession]:
    """Return the sessions of this database doing something, longest in their state first.

    By default: client sessions of the current database that are running a query or
    sit in a transaction. ``running`` keeps only those running a query; ``everything``
    adds idle sessions, background processes and the other databases of the server.
    The caller's own session is never listed.
    """
    states = ["active"] if running else None if everything else _OPEN_STATES
    return _sessions(
        conn,
        states=states,
        min_duration_s=min_duration_s,
        all_databases=everything,
        include_background=everything,
    )


def long_running_queries(
    conn: Connection, *, min_duration_s: float = 60.0, include_background: bool = False
) -> list[ServerSession]:
    """Return the queries of this database running at least ``min_duration_s``, longest first.

    Autovacuum, parallel workers and replication senders are left out unless
    ``include_background``: their long runs are by design (a parallel worker repeats
    its leader's query).
    """
    return _sessions(
        conn,
        states=["active"],
        min_duration_s=min_duration_s,
        include_background=include_background,
    )


def idle_in_transaction(conn: Connection, *, min_duration_s: float = 60.0) -> list[ServerSession]:
    """Return the sessions of this database idle in an open transaction that long, or longer.

    ``duration_s`` is the idle time, ``xact_age_s`` the transaction's age and ``query``
    its last statement. Aborted transactions are left out: they hold no locks and no
    snapshot, only a connection, until the client rolls back.
    """
    return _sessions(conn, states=["idle in transaction"], min_duration_s=min_duration_s)


def long_running_query_findings(
    queries: Iterable[ServerSession], *, critical_s: float = 600.0
) -> list[Finding]:
    """Turn long-running queries into findings whose fix cancels the query.

    Critical from ``critical_s`` seconds on.
    """
    return [
        Finding(
            check="long_running_queries",
            severity=severity(session.duration_s, critical_s),
            what=f"query of pid {session.pid} ({who(session)}) has run for "
            f"{format_duration(session.duration_s)}: {short(session.query)}",
            why="A running query keeps its locks and its snapshot until it ends: it can "
            "block writes and schema changes, and keeps vacuum from removing dead rows. "
            "Cancelling it rolls back its statement, and the transaction it is in: check "
            "first that this work may be lost, and set statement_timeout for the role or "
            "application so it does not happen again.",
            fix=f"SELECT pg_cancel_backend({session.pid});",
            subject=f"pid {session.pid}",
            details=_details(session),
        )
        for session in queries
    ]


def idle_transaction_findings(
    idle: Iterable[ServerSession], *, critical_s: float = 600.0
) -> list[Finding]:
    """Turn sessions idle in a transaction into findings whose fix ends the session.

    Critical from ``critical_s`` seconds idle on.
    """
    findings = []
    for session in idle:
        timeout = ""
        if session.user:
            role = quote_identifier(session.user, plain=True)
            timeout = (
                " To end such sessions by themselves: ALTER ROLE "
                f"{role} SET idle_in_transaction_session_timeout = '5min';"
            )
        findings.append(
            Finding(
                check="idle_in_transaction",
                severity=severity(session.duration_s, critical_s),
                what=f"pid {session.pid} ({who(session)}) has been idle in a transaction "
                f"for {format_duration(session.duration_s)} (open for "
                f"{format_duration(session.xact_age_s)}); last query: {short(session.query)}",
                why="An open transaction keeps its locks and its snapshot while the client "
                "does nothing: other sessions queue behind its locks, and vacuum cannot "
                "remove the rows that died since it began. Usually code that misses a "
                "commit or rollback on some path, or a console left open. Ending the "
                "session rolls its transaction back." + timeout,
                fix=f"SELECT pg_terminate_backend({session.pid});",
                subject=f"pid {session.pid}",
                details=_details(session),
            )
        )
    return findings


def _details(session: ServerSession) -> dict[str, Any]:
    return {
        "pid": session.pid,
        "user": session.user,
        "database": session.database,
        "application": session.application,
        "client": session.client,
        "state": session.state,
        "duration_s": rounded(session.duration_s),
        "xact_age_s": rounded(session.xact_age_s),
        "wait_event": session.wait_event,
        "query": session.query,
    }


def _long_running(
    conn: Connection,
    *,
    min_duration_s: float = 60.0,
    critical_s: float = 600.0,
    include_background: bool = False,
) -> list[Finding]:
    queries = long_running_queries(
        conn, min_duration_s=min_duration_s, include_background=include_background
    )
    return long_running_query_findings(queries, critical_s=critical_s)


def _idle(
    conn: Connection, *, min_duration_s: float = 60.0, critical_s: float = 600.0
) -> list[Finding]:
    idle = idle_in_transaction(conn, min_duration_s=min_duration_s)
    return idle_transaction_findings(idle, critical_s=critical_s)


def _blocked_findings(
    conn: Connection, *, min_wait_s: float = 5.0, critical_s: float = 60.0
) -> list[Finding]:
    blocked = blocked_queries(conn, min_wait_s=min_wait_s)
    return blocked_query_findings(blocked, critical_s=critical_s)


def _connections(
    conn: Connection, *, warning: float = 0.8, critical: float = 0.95
) -> list[Finding]:
    return connection_findings(connection_usage(conn), warning=warning, critical=critical)


CHECKS = (
    Check(
        "long_running_queries",
        "activity",
        "queries of this database running for a minute or more",
        _long_running,
    ),
    Check(
        "idle_in_transaction",
        "activity",
        "sessions sitting idle in an open transaction",
        _idle,
    ),
    Check(
        "blocked_queries",
        "activity",
        "queries waiting for a lock, with the session at the root of the chain",
        _blocked_findings,
    ),
    Check(
        "connection_usage",
        "activity",
        "client connections against max_connections",
        _connections,
        scope="cluster",
    ),
)


def check_activity(
    conn: Connection,
    *,
    long_running_s: float = 60.0,
    idle_in_transaction_s: float = 60.0,
    blocked_s: float = 5.0,
    connections_warning: float = 0.8,
    connections_critical: float = 0.95,
) -> list[CheckResult]:
    """Run the four activity checks and return one result each.

    The first three take their minimum duration in seconds; the connection check warns
    and turns critical at those fractions of the available slots.
    """
    thresholds = {
        "long_running_queries": {"min_duration_s": long_running_s},
        "idle_in_transaction": {"min_duration_s": idle_in_transaction_s},
        "blocked_queries": {"min_wait_s": blocked_s},
        "connection_usage": {"warning": connections_warning, "critical": connections_critical},
    }
    return run_checks(conn, CHECKS, thresholds)
