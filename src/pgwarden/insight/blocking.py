"""Find the queries waiting for a lock, with every session ahead of them in the chain.

A query blocked behind another session waits, holding its connection, for as long as
that session keeps its lock; and others queue up behind it. :func:`blocked_queries`
walks the chain with ``pg_blocking_pids()`` up to the root, the session that waits for
nobody and so is the one to act on::

    with engine.connect() as conn:
        for blocked in blocked_queries(conn, min_wait_s=5):
            print(blocked.pid, blocked.waits_for, "depth", blocked.depth)
            for root in blocked.roots:
                print("  root:", root.pid, root.state, root.query)

The fix in a finding cancels the root's query, or ends its session when it sits idle
in a transaction; both roll its work back, so the reason says to look first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Row

from pgwarden.insight.findings import Finding
from pgwarden.insight.sessions import (
    SESSION_COLUMNS,
    format_duration,
    rounded,
    severity,
    short,
    who,
)

__all__ = ["BlockedQuery", "Blocker", "blocked_queries", "blocked_query_findings"]


@dataclass(frozen=True)
class Blocker:
    """A session ahead of a blocked query in its chain of lock waits.

    ``blocked_by`` is empty for a root: a session that holds the lock and waits for
    nobody, and so is the one to look at.
    """

    pid: int
    user: str | None
    database: str | None
    application: str | None
    client: str | None
    state: str | None
    duration_s: float | None
    xact_age_s: float | None
    blocked_by: list[int]
    waits_for: str | None
    query: str | None


@dataclass(frozen=True)
class BlockedQuery:
    """A query waiting for a lock, with every session ahead of it.

    ``waits_for`` names the lock (``ShareLock on transaction 7581``, ``AccessShareLock on
    table public.orders``); ``waiting_s`` is how long it has waited (on PostgreSQL 13,
    how long its query has run). ``blockers`` lists the sessions ahead of it, nearest
    first, each once; ``root_pids`` those of them that wait for nobody (empty only in a
    deadlock, which the server breaks by itself); ``depth`` is the longest chain.
    """

    pid: int
    user: str | None
    database: str | None
    application: str | None
    client: str | None
    waits_for: str | None
    waiting_s: float | None
    xact_age_s: float | None
    query: str | None
    blocked_by: list[int]
    blockers: list[Blocker]
    root_pids: list[int]
    depth: int

    @property
    def roots(self) -> list[Blocker]:
        """Return the sessions at the head of the chain: the ones holding everything up."""
        return [blocker for blocker in self.blockers if blocker.pid in self.root_pids]


# Every process waiting on a lock (in any database: a chain may pass through one),
# and every process they wait for. pg_locks is read once: each read copies the lock
# table. waitstart (PostgreSQL 14+) is read through to_jsonb so 13 can run this too.
BLOCKED_QUERIES = text(
    f"""
WITH session AS MATERIALIZED (
  SELECT {SESSION_COLUMNS},
         a.datname = current_database() AND a.pid <> pg_backend_pid() AS here
  FROM pg_stat_activity AS a
),
waiting AS (
  SELECT * FROM session WHERE cardinality(blocked_by) > 0
),
involved AS (
  SELECT pid FROM waiting
  UNION
  SELECT unnest(blocked_by) FROM waiting
),
ungranted AS MATERIALIZED (
  SELECT DISTINCT ON (l.pid)
         l.pid,
         l.mode || ' on ' || CASE l.locktype
           WHEN 'relation' THEN 'table ' || l.relation::regclass::text
           WHEN 'tuple' THEN 'a row of ' || l.relation::regclass::text
           WHEN 'transactionid' THEN 'transaction ' || l.transactionid::text
           WHEN 'virtualxid' THEN 'virtual transaction ' || l.virtualxid
           WHEN 'advisory' THEN 'an advisory lock'
           ELSE l.locktype
         END AS waits_for,
         (to_jsonb(l) ->> 'waitstart')::timestamptz AS waitstart
  FROM pg_locks AS l
  WHERE NOT l.granted
    AND l.pid IN (SELECT pid FROM waiting)
  ORDER BY l.pid
)
SELECT s.pid,
       s."user",
       s.database,
       s.application,
       s.client,
       s.state,
       s.duration_s,
       s.xact_age_s,
       s.blocked_by,
       s.query,
       s.here,
       u.waits_for,
       EXTRACT(EPOCH FROM statement_timestamp() - COALESCE(u.waitstart, s.query_start))::float8
         AS waiting_s
FROM session AS s
LEFT JOIN ungranted AS u ON u.pid = s.pid
WHERE s.pid IN (SELECT pid FROM involved)
ORDER BY s.pid
"""
)


def blocked_queries(conn: Connection, *, min_wait_s: float = 0.0) -> list[BlockedQuery]:
    """Return the queries of this database waiting for a lock that long, longest first.

    Each comes with its whole chain: the sessions it waits for, those they wait for,
    up to the roots that wait for nobody. Blockers may be in any database.
    """
    rows = {row.pid: row for row in conn.execute(BLOCKED_QUERIES)}
    found = [
        _blocked(row, rows)
        for row in rows.values()
        if row.here and row.blocked_by and (row.waiting_s or 0) >= min_wait_s
    ]
    return sorted(found, key=lambda blocked: (-(blocked.waiting_s or 0), blocked.pid))


def _blocked(row: Row[Any], rows: dict[int, Row[Any]]) -> BlockedQuery:
    # Breadth first from the waiting query: nearest blockers first, each once.
    order: list[int] = []
    queue = list(row.blocked_by)
    while queue:
        pid = queue.pop(0)
        if pid in order or pid == row.pid:
            continue
        order.append(pid)
        queue.extend(rows[pid].blocked_by if pid in rows else [])
    blockers = [_blocker(pid, rows.get(pid)) for pid in order]
    return BlockedQuery(
        pid=row.pid,
        user=row.user,
        database=row.database,
        application=row.application,
        client=row.client,
        waits_for=row.waits_for,
        waiting_s=row.waiting_s,
        xact_age_s=row.xact_age_s,
        query=row.query,
        blocked_by=list(row.blocked_by),
        blockers=blockers,
        root_pids=[blocker.pid for blocker in blockers if not blocker.blocked_by],
        depth=_depth(row.pid, rows, frozenset()),
    )


def _blocker(pid: int, row: Row[Any] | None) -> Blocker:
    if row is None:
        # pg_blocking_pids() gives 0 for a prepared transaction; any other pid missing
        # here ended after the lock table was read.
        state = "prepared transaction" if pid == 0 else "ended"
        return Blocker(pid, None, None, None, None, state, None, None, [], None, None)
    return Blocker(
        pid=pid,
        user=row.user,
        database=row.database,
        application=row.application,
        client=row.client,
        state=row.state,
        duration_s=row.duration_s,
        xact_age_s=row.xact_age_s,
        blocked_by=list(row.blocked_by),
        waits_for=row.waits_for,
        query=row.query,
    )


def _depth(pid: int, rows: dict[int, Row[Any]], seen: frozenset[int]) -> int:
    """Return the length of the longest chain of waits from ``pid``, a cycle cut short."""
    row = rows.get(pid)
    ahead = [p for p in (row.blocked_by if row else []) if p not in seen and p != pid]
    return max((1 + _depth(p, rows, seen | {pid}) for p in ahead), default=0)


def blocked_query_findings(
    blocked: Iterable[BlockedQuery], *, critical_s: float = 60.0
) -> list[Finding]:
    """Turn blocked queries into one finding per root holder, fix aimed at the root.

    Critical when a query behind the root has waited ``critical_s`` seconds or more. A
    query waiting in a cycle (a deadlock, which the server breaks after
    ``deadlock_timeout``) is reported on its own, with no fix.
    """
    by_root: dict[int | None, tuple[Blocker | None, list[BlockedQuery]]] = {}
    for query in blocked:
        roots: list[Blocker | None] = [*query.roots] or [None]
        for root in roots:
            by_root.setdefault(root.pid if root else None, (root, []))[1].append(query)
    findings = []
    for root, queries in by_root.values():
        longest = max((query.waiting_s or 0.0) for query in queries)
        findings.append(
            Finding(
                check="blocked_queries",
                severity=severity(longest, critical_s),
                what=_blocked_what(root, queries, longest),
                why=_blocked_why(root),
                fix=_blocked_fix(root),
                subject=f"pid {root.pid}" if root else None,
                details={
                    "root": None if root is None else _blocker_details(root),
                    "blocked": [
                        {
                            "pid": query.pid,
                            "user": query.user,
                            "application": query.application,
                            "waits_for": query.waits_for,
                            "waiting_s": rounded(query.waiting_s),
                            "query": query.query,
                            "depth": query.depth,
                            "chain": [_blocker_details(b) for b in query.blockers],
                        }
                        for query in queries
                    ],
                },
            )
        )
    return findings


def _blocked_what(root: Blocker | None, queries: list[BlockedQuery], longest: float) -> str:
    count = f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}"
    depth = max(query.depth for query in queries)
    chain = f", chains up to {depth} deep" if depth > 1 else ""
    wait = f"longest wait {format_duration(longest)}"
    if root is None:
        return f"{count} wait for each other in a cycle ({wait})"
    if root.pid == 0:
        return f"a prepared transaction blocks {count} ({wait}{chain})"
    if root.state == "ended":
        return f"pid {root.pid}, which has just ended, blocked {count} ({wait}{chain})"
    xact = (
        "" if root.xact_age_s is None else f", transaction open {format_duration(root.xact_age_s)}"
    )
    return (
        f"pid {root.pid} ({who(root)}, {root.state} for {format_duration(root.duration_s)}"
        f"{xact}) blocks {count} ({wait}{chain}): {short(root.query)}"
    )


def _blocked_why(root: Blocker | None) -> str:
    waiting = "Queries waiting for a lock hold their connection and do nothing; more queue behind."
    if root is None:
        return waiting + " The server's deadlock check ends one of them after deadlock_timeout."
    if root.pid == 0:
        return (
            waiting + " The lock is held by a transaction prepared for two-phase commit; "
            "find it in pg_prepared_xacts, then COMMIT PREPARED or ROLLBACK PREPARED it."
        )
    if root.state == "ended":
        return waiting + " The session at the root has ended, releasing its locks: look again."
    if root.state == "active":
        action = "Cancelling its query frees its locks (in a transaction, by rolling it back)"
    else:
        action = (
            "It is not running anything, so only ending its session frees the locks, "
            "rolling back its transaction"
        )
    return (
        waiting + f" pid {root.pid} holds what the others wait for. {action}: check "
        "first what it is (a migration, a batch job, a console) and whether its work may "
        "be lost."
    )


def _blocked_fix(root: Blocker | None) -> str | None:
    if root is None or root.pid == 0 or root.state == "ended":
        return None
    if root.state == "active":
        return f"SELECT pg_cancel_backend({root.pid});"
    return f"SELECT pg_terminate_backend({root.pid});"


def _blocker_details(blocker: Blocker) -> dict[str, Any]:
    return {
        "pid": blocker.pid,
        "user": blocker.user,
        "application": blocker.application,
        "client": blocker.client,
        "state": blocker.state,
        "duration_s": rounded(blocker.duration_s),
        "xact_age_s": rounded(blocker.xact_age_s),
        "blocked_by": blocker.blocked_by,
        "waits_for": blocker.waits_for,
        "query": blocker.query,
    }
