"""Measure the WAL, and the dead rows, that replication slots keep from being removed.

:func:`replication_slots` lists the slots of a primary or a standby, each with the WAL
it retains; :func:`check_slots` turns those nothing reads from, or that hold much WAL,
into findings::

    with engine.connect() as conn:
        for slot in replication_slots(conn):
            print(slot.name, slot.active, slot.retained_bytes)
        results = check_slots(conn)

Slots are cluster-wide: every database of a server sees the same ones. Replication
lag is measured in :mod:`pgwarden.insight.replication`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import quote_identifier
from pgwarden._units import format_size
from pgwarden.insight._literals import literal
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity

__all__ = [
    "ReplicationSlot",
    "check_slots",
    "replication_slot_findings",
    "replication_slots",
]

# Slots: a gigabyte is the default max_wal_size, so a slot past it keeps more WAL than
# the server would on its own; ten gigabytes is when disks start to fill.
WARNING_RETAINED_BYTES = 1024**3
CRITICAL_RETAINED_BYTES = 10 * 1024**3


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
# The same fragment as replication.py's, for the same reason.
_CURRENT_LSN = """
CASE WHEN pg_is_in_recovery()
     THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
     ELSE pg_current_wal_lsn()
END
"""

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
        what = (
            f"{state} {slot.slot_type} replication slot {quote_identifier(slot.name, plain=True)}"
        )
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
        "replication_slots",
        "replication",
        "replication slots nothing reads from, or holding much WAL",
        _replication_slots,
        scope="cluster",
    ),
)


def check_slots(
    conn: Connection,
    *,
    warning_retained_bytes: int = WARNING_RETAINED_BYTES,
    critical_retained_bytes: int = CRITICAL_RETAINED_BYTES,
) -> list[CheckResult]:
    """Check replication slots; one result."""
    [slots] = CHECKS
    return [
        slots(
            conn,
            warning_retained_bytes=warning_retained_bytes,
            critical_retained_bytes=critical_retained_bytes,
        ),
    ]
