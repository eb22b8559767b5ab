"""Describe a server session: the columns read for one, its duration and query for people.

Shared by the activity modules and by what shows sessions (``pgwarden ops``).
"""

from __future__ import annotations

from typing import Protocol

from pgwarden.insight.findings import Severity

__all__ = ["SESSION_COLUMNS", "format_duration", "rounded", "severity", "short", "who"]

# The columns of pg_stat_activity (as ``a``) that make a Session. duration_s is the
# time in the current state: the query's run time if active, the idle time otherwise.
# statement_timestamp(), not now(): the caller may sit in a long transaction.
SESSION_COLUMNS = """
  a.pid,
  a.usename AS "user",
  a.datname AS database,
  a.application_name AS application,
  CASE WHEN a.client_port = -1 THEN 'local' ELSE host(a.client_addr) END AS client,
  a.backend_type,
  a.state,
  a.wait_event_type,
  a.wait_event,
  a.backend_start,
  a.xact_start,
  a.query_start,
  EXTRACT(EPOCH FROM statement_timestamp()
    - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.state_change END)::float8
    AS duration_s,
  EXTRACT(EPOCH FROM statement_timestamp() - a.xact_start)::float8 AS xact_age_s,
  -- Only for a process waiting on a lock: pg_blocking_pids() briefly locks the whole
  -- lock table, and the manual warns against calling it often.
  CASE WHEN a.wait_event_type = 'Lock' OR a.wait_event = 'SafeSnapshot'
    THEN ARRAY(SELECT DISTINCT unnest(pg_blocking_pids(a.pid)) ORDER BY 1)
    ELSE '{}'::int[] END AS blocked_by,
  a.leader_pid,
  a.query
"""


class _Described(Protocol):
    @property
    def user(self) -> str | None: ...
    @property
    def application(self) -> str | None: ...
    @property
    def client(self) -> str | None: ...


def format_duration(seconds: float | None) -> str:
    """Return a duration for people: ``850ms``, ``4.2s``, ``12m 05s``, ``3h 04m``, ``2d 05h``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def severity(seconds: float | None, critical_s: float) -> Severity:
    """Return ``critical`` from ``critical_s`` seconds on, else ``warning``."""
    return "critical" if (seconds or 0.0) >= critical_s else "warning"


def who(session: _Described) -> str:
    """Return ``user, application, from client`` for a finding's one line."""
    parts = [session.user or "?", session.application or "no application name"]
    if session.client:
        parts.append(f"from {session.client}")
    return ", ".join(parts)


def short(query: str | None, width: int = 80) -> str:
    """Return a query on one line, cut to ``width`` characters."""
    flat = " ".join((query or "").split()) or "-"
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def rounded(seconds: float | None) -> float | None:
    """Return seconds rounded to the millisecond, for a finding's details."""
    return None if seconds is None else round(seconds, 3)
