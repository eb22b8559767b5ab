"""Measure replication lag, from either end.

On a primary, :func:`replica_lag` reads ``pg_stat_replication``: one row per standby
or logical consumer streaming from it, with how far behind it writes, flushes and
replays. On a standby, :func:`standby_lag` says how far its own replay trails what
it has received::

    with engine.connect() as conn:
        for replica in replica_lag(conn):
            print(replica.application_name, replica.replay_lag_seconds, replica.bytes_behind)
        if (standby := standby_lag(conn)) is not None:
            print(standby.delay_seconds, standby.bytes_behind)

A role needs ``pg_monitor`` (``pg_read_all_stats``) to see the lag columns of
``pg_stat_replication`` for standbys other roles connected; without it they read as
``NULL`` and nothing is reported. The WAL replication slots hold back is measured in
:mod:`pgwarden.insight.slots`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._units import format_size
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity

__all__ = [
    "ReplicaLag",
    "StandbyLag",
    "check_replication",
    "replica_lag",
    "replication_lag_findings",
    "standby_lag",
]

# Lag: a minute of stale reads on a replica is worth a look, ten minutes is an outage
# for anything that reads there. A gigabyte of WAL not yet replayed is minutes of
# replay even on fast storage.
WARNING_SECONDS = 60.0
CRITICAL_SECONDS = 600.0
WARNING_BYTES = 1024**3


@dataclass(frozen=True)
class ReplicaLag:
    """A standby (or logical consumer, or base backup) streaming WAL from this server.

    The ``*_lag_seconds`` are PostgreSQL's own measures of how long a commit here took
    to be written, flushed and replayed there; they are ``None`` once a replica has
    caught up and the server is idle. ``bytes_behind`` is the WAL written here that
    the replica has not replayed.
    """

    pid: int
    application_name: str
    client_addr: str | None
    state: str | None
    sync_state: str | None
    sent_lsn: str | None
    replay_lsn: str | None
    write_lag_seconds: float | None
    flush_lag_seconds: float | None
    replay_lag_seconds: float | None
    bytes_behind: int | None


@dataclass(frozen=True)
class StandbyLag:
    """How far this standby's replay trails what it has received and its primary.

    ``delay_seconds`` is zero when replay has caught up with everything received, and
    otherwise the age of the last transaction replayed: on an idle primary that age
    grows with no real lag, which is why a caught-up standby reads zero.
    ``receiver_status`` is ``streaming`` while a WAL receiver is connected (``None``
    when there is none, as in recovery from an archive only, or the role may not see).
    """

    receive_lsn: str | None
    replay_lsn: str | None
    bytes_behind: int | None
    delay_seconds: float | None
    last_replayed_at: datetime | None
    replay_paused: bool
    receiver_status: str | None


# On a cascading standby pg_current_wal_lsn() fails: measure from what it received.
_CURRENT_LSN = """
CASE WHEN pg_is_in_recovery()
     THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
     ELSE pg_current_wal_lsn()
END
"""

REPLICA_LAG = text(
    f"""
SELECT pid,
       application_name,
       host(client_addr) AS client_addr,
       state,
       sync_state,
       sent_lsn::text AS sent_lsn,
       replay_lsn::text AS replay_lsn,
       EXTRACT(EPOCH FROM write_lag)::float8 AS write_lag_seconds,
       EXTRACT(EPOCH FROM flush_lag)::float8 AS flush_lag_seconds,
       EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_lag_seconds,
       pg_wal_lsn_diff({_CURRENT_LSN}, replay_lsn)::bigint AS bytes_behind
FROM pg_stat_replication
ORDER BY application_name, pid
"""
)


def replica_lag(conn: Connection) -> list[ReplicaLag]:
    """Return the replicas streaming from this server, with their lag.

    Empty on a server nothing streams from, which includes most standbys.
    """
    return [ReplicaLag(**row._mapping) for row in conn.execute(REPLICA_LAG)]


# pg_is_wal_replay_paused() fails outside recovery, so only a standby calls it.
STANDBY_LAG = text(
    """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint
         AS bytes_behind,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS delay_seconds,
       pg_last_xact_replay_timestamp() AS last_replayed_at,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END
         AS replay_paused,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status
"""
)


def standby_lag(conn: Connection) -> StandbyLag | None:
    """Return this standby's replay lag, or ``None`` when the server is not a standby."""
    row = conn.execute(STANDBY_LAG).one()
    if not row.in_recovery:
        return None
    fields = dict(row._mapping)
    del fields["in_recovery"]
    return StandbyLag(**fields)


def replication_lag_findings(
    replicas: Iterable[ReplicaLag],
    standby: StandbyLag | None = None,
    *,
    warning_seconds: float = WARNING_SECONDS,
    critical_seconds: float = CRITICAL_SECONDS,
    warning_bytes: int = WARNING_BYTES,
) -> list[Finding]:
    """Turn lagging replicas, and this server's own lag as a standby, into findings."""
    findings = []
    for replica in replicas:
        severity = _lag_severity(
            replica.replay_lag_seconds,
            replica.bytes_behind,
            warning_seconds,
            critical_seconds,
            warning_bytes,
        )
        if severity is None:
            continue
        name = replica.application_name or str(replica.pid)
        where = f" at {replica.client_addr}" if replica.client_addr else ""
        sync = replica.sync_state in ("sync", "quorum")
        behind = _behind(replica.replay_lag_seconds, replica.bytes_behind)
        findings.append(
            Finding(
                check="replication_lag",
                severity=severity,
                what=f"replica {name}{where} is {behind}",
                why="Reads on the replica see data that old, and a failover to it loses "
                "or waits for what it has not replayed"
                + ("; as a synchronous standby it also slows every commit here." if sync else ".")
                + " Look at the network, the replica's disk, and long queries there "
                "that hold replay back (max_standby_streaming_delay).",
                fix=None,
                subject=name,
                details=asdict(replica),
            )
        )
    if standby is not None:
        findings.extend(
            _standby_findings(standby, warning_seconds, critical_seconds, warning_bytes)
        )
    return findings


def _standby_findings(
    standby: StandbyLag, warning_seconds: float, critical_seconds: float, warning_bytes: int
) -> list[Finding]:
    details = asdict(standby)
    if standby.last_replayed_at is not None:  # details stay plain data, for JSON
        details["last_replayed_at"] = standby.last_replayed_at.isoformat()
    if standby.replay_paused:
        return [
            Finding(
                check="replication_lag",
                severity="warning",
                what="WAL replay is paused on this standby",
                why="It keeps receiving WAL but applies none, so its data stays as of the "
                "pause and the WAL piles up on its disk.",
                fix="SELECT pg_wal_replay_resume();",
                subject=None,
                details=details,
            )
        ]
    severity = _lag_severity(
        standby.delay_seconds,
        standby.bytes_behind,
        warning_seconds,
        critical_seconds,
        warning_bytes,
    )
    if severity is None:
        return []
    return [
        Finding(
            check="replication_lag",
            severity=severity,
            what=f"this standby is {_behind(standby.delay_seconds, standby.bytes_behind)}",
            why="Queries here see data that old. Replay waits for queries that conflict "
            "with it up to max_standby_streaming_delay, and is slowed by this server's disk.",
            fix=None,
            subject=None,
            details=details,
        )
    ]


def _replication_lag(
    conn: Connection,
    *,
    warning_seconds: float = WARNING_SECONDS,
    critical_seconds: float = CRITICAL_SECONDS,
    warning_bytes: int = WARNING_BYTES,
) -> list[Finding]:
    return replication_lag_findings(
        replica_lag(conn),
        standby_lag(conn),
        warning_seconds=warning_seconds,
        critical_seconds=critical_seconds,
        warning_bytes=warning_bytes,
    )


CHECKS = (
    Check(
        "replication_lag",
        "replication",
        "replicas, or this standby, replaying far behind the primary",
        _replication_lag,
        scope="cluster",
    ),
)


def check_replication(
    conn: Connection,
    *,
    warning_seconds: float = WARNING_SECONDS,
    critical_seconds: float = CRITICAL_SECONDS,
    warning_bytes: int = WARNING_BYTES,
) -> list[CheckResult]:
    """Check replication lag; one result.

    Replication slots are checked by :func:`pgwarden.insight.slots.check_slots`.
    """
    [lag] = CHECKS
    return [
        lag(
            conn,
            warning_seconds=warning_seconds,
            critical_seconds=critical_seconds,
            warning_bytes=warning_bytes,
        ),
    ]


def _lag_severity(
    seconds: float | None,
    bytes_behind: int | None,
    warning_seconds: float,
    critical_seconds: float,
    warning_bytes: int,
) -> Severity | None:
    if seconds is not None and seconds >= critical_seconds:
        return "critical"
    if (seconds is not None and seconds >= warning_seconds) or (bytes_behind or 0) >= warning_bytes:
        return "warning"
    return None


def _behind(seconds: float | None, bytes_behind: int | None) -> str:
    parts = []
    if seconds is not None:
        parts.append(f"{seconds:,.1f} s")
    if bytes_behind is not None:
        parts.append(f"{format_size(bytes_behind)} of WAL")
    return " and ".join(parts) + " behind" if parts else "behind"
