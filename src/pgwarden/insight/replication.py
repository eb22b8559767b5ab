"""Measure replication lag, from either end, and the WAL replication slots hold back.

On a primary, :func:`replica_lag` reads ``pg_stat_replication``: one row per standby
or logical consumer streaming from it, with how far behind it writes, flushes and
replays. On a standby, :func:`standby_lag` says how far its own replay trails what
it has received. :func:`replication_slots` lists the slots of either, with the WAL
each keeps from being removed::

    with engine.connect() as conn:
        for replica in replica_lag(conn):
            print(replica.application_name, replica.replay_lag_seconds, replica.bytes_behind)
        for slot in replication_slots(conn):
            print(slot.name, slot.active, slot.retained_bytes)

A role needs ``pg_monitor`` (``pg_read_all_stats``) to see the lag columns of
``pg_stat_replication`` for standbys other roles connected; without it they read as
``NULL`` and nothing is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.insight._literals import literal
from pgwarden.insight.findings import (
    Check,
    CheckResult,
    Finding,
    Severity,
    format_size,
    quote,
)

__all__ = [
    "ReplicaLag",
    "ReplicationSlot",
    "StandbyLag",
    "check_replication",
    "replica_lag",
    "replication_lag_findings",
    "replication_slot_findings",
    "replication_slots",
    "standby_lag",
]

# Lag: a minute of stale reads on a replica is worth a look, ten minutes is an outage
# for anything that reads there. A gigabyte of WAL not yet replayed is minutes of
# replay even on fast storage.
WARNING_SECONDS = 60.0
CRITICAL_SECONDS = 600.0
WARNING_BYTES = 1024**3
# Slots: a gigabyte is the default max_wal_size, so a slot past it keeps more WAL than
# the server would on its own; ten gigabytes is when disks start to fill.
WARNING_RETAINED_BYTES = 1024**3
CRITICAL_RETAINED_BYTES = 10 * 1024**3


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


@dataclass(frozen=True)
class ReplicationSlot:
    """A replication slot, and the WAL and rows it keeps from being removed.

    ``retained_bytes`` is the WAL from the slot's ``restart_lsn`` to now (``None`` if
    it never reserved any). ``wal_status`` is PostgreSQL's verdict: ``reserved``
    (within max_wal_size), ``extended`` (beyond it), ``unreserved`` (about to lose WAL
    it needs) or ``lost`` (it has). ``xmin_age`` and ``catalog_xmin_age`` are how far
    the slot holds back the removal of dead rows, if it does.
    """

    name: str
    slot_type: str
    plugin: str | None
    database: str | None
    active: bool
    active_pid: int | None
    temporary: bool
    wal_status: str | None
    retained_bytes: int | None
    safe_wal_size: int | None
    xmin_age: int | None
    catalog_xmin_age: int | None


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


REPLICATION_SLOTS = text(
    f"""
SELECT s.slot_name AS name,
       s.slot_type,
       s.plugin,
       s.database,
       s.active,
       s.active_pid,
       s.temporary,
       s.wal_status,
       pg_wal_lsn_diff(here.lsn, s.restart_lsn)::bigint AS retained_bytes,
       s.safe_wal_size,
       age(s.xmin) AS xmin_age,
       age(s.catalog_xmin) AS catalog_xmin_age
FROM pg_replication_slots AS s
CROSS JOIN (SELECT {_CURRENT_LSN} AS lsn) AS here
ORDER BY retained_bytes DESC NULLS LAST, name
"""
)


def replication_slots(conn: Connection) -> list[ReplicationSlot]:
    """Return the server's replication slots, the most WAL retained first.

    Slots are cluster-wide: every database of a server sees the same ones.
    """
    return [ReplicationSlot(**row._mapping) for row in conn.execute(REPLICATION_SLOTS)]


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


def replication_slot_findings(
    slots: Iterable[ReplicationSlot],
    *,
    warning_retained_bytes: int = WARNING_RETAINED_BYTES,
    critical_retained_bytes: int = CRITICAL_RETAINED_BYTES,
) -> list[Finding]:
    """Turn inactive slots, and slots holding much WAL or losing it, into findings.

    An inactive slot is a warning whatever it holds, and its fix drops it; a slot
    (active or not) is critical from ``critical_retained_bytes`` of WAL or once
    PostgreSQL marks its WAL ``unreserved`` or ``lost``.
    """
    findings = []
    for slot in slots:
        retained = slot.retained_bytes or 0
        severity: Severity | None = None
        if slot.wal_status in ("unreserved", "lost") or retained >= critical_retained_bytes:
            severity = "critical"
        elif not slot.active or retained >= warning_retained_bytes:
            severity = "warning"
        if severity is None:
            continue
        state = "active" if slot.active else "inactive"
        what = f"{state} {slot.slot_type} replication slot {quote(slot.name)}"
        what += (
            f" retains {format_size(retained)} of WAL" if slot.retained_bytes is not None else ""
        )
        if slot.wal_status == "lost":
            what += " and has lost WAL its consumer needs"
        held = max(slot.xmin_age or 0, slot.catalog_xmin_age or 0)
        if held:
            what += f", holding back dead-row cleanup by {held:,} transactions"
        findings.append(
            Finding(
                check="replication_slots",
                severity=severity,
                what=what,
                why=_slot_why(slot),
                fix=None
                if slot.active
                else f"SELECT pg_drop_replication_slot({literal(slot.name)});",
                subject=slot.name,
                details=asdict(slot),
            )
        )
    return findings


def _slot_why(slot: ReplicationSlot) -> str:
    keeps = (
        "A slot keeps every WAL segment its consumer has not confirmed (and, with an xmin, "
        "the dead rows it might still read), so the disk fills unless "
        "max_slot_wal_keep_size caps it."
    )
    if slot.wal_status == "lost":
        return (
            "PostgreSQL has already removed WAL this slot needs: its consumer cannot resume "
            "from it and must be rebuilt or resynchronised. Drop the slot once it is."
        )
    if slot.active:
        return (
            f"{keeps} Its consumer is connected but behind: look at what it is waiting "
            "for, or its network and disk."
        )
    return (
        f"{keeps} Nothing is connected to this one. Drop it only if its consumer (a "
        "standby, a subscription, a change-data-capture tool) is gone for good: one that "
        "comes back needs the slot and must be rebuilt without it."
    )


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


def _replication_slots(
    conn: Connection,
    *,
    warning_retained_bytes: int = WARNING_RETAINED_BYTES,
    critical_retained_bytes: int = CRITICAL_RETAINED_BYTES,
) -> list[Finding]:
    return replication_slot_findings(
        replication_slots(conn),
        warning_retained_bytes=warning_retained_bytes,
        critical_retained_bytes=critical_retained_bytes,
    )


CHECKS = (
    Check(
        "replication_lag",
        "replication",
        "replicas, or this standby, replaying far behind the primary",
        _replication_lag,
        scope="cluster",
    ),
    Check(
        "replication_slots",
        "replication",
        "replication slots nothing reads from, or holding much WAL",
        _replication_slots,
        scope="cluster",
    ),
)


def check_replication(
    conn: Connection,
    *,
    warning_seconds: float = WARNING_SECONDS,
    critical_seconds: float = CRITICAL_SECONDS,
    warning_bytes: int = WARNING_BYTES,
    warning_retained_bytes: int = WARNING_RETAINED_BYTES,
    critical_retained_bytes: int = CRITICAL_RETAINED_BYTES,
) -> list[CheckResult]:
    """Check replication lag and replication slots; one result each."""
    lag, slots = CHECKS
    return [
        lag(
            conn,
            warning_seconds=warning_seconds,
            critical_seconds=critical_seconds,
            warning_bytes=warning_bytes,
        ),
        slots(
            conn,
            warning_retained_bytes=warning_retained_bytes,
            critical_retained_bytes=critical_retained_bytes,
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
