"""Check that WAL archiving works and keeps up, and that restores of it are proven.

:func:`archiver_status` reads ``pg_stat_archiver`` and the segments waiting in
``pg_wal/archive_status``; :func:`archiving_findings` turns a failing archive_command or
a backlog into findings. ``pitr_drill`` reads the restore drills recorded in the backup
storage (``PGWARDEN_BACKUP_STORAGE``) and warns when none passed recently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.insight.errors import CheckSkipped
from pgwarden.insight.findings import Check, Finding

__all__ = ["ArchiverStatus", "archiver_status", "archiving_findings", "drill_findings"]

WARNING_LAG_SECONDS = 300.0
DRILL_MAX_AGE_DAYS = 7.0

_STATUS = text(
    """
    SELECT current_setting('archive_mode') AS archive_mode,
           s.archived_count,
           s.last_archived_wal,
           s.last_archived_time,
           s.failed_count,
           s.last_failed_wal,
           s.last_failed_time,
           w.waiting,
           w.oldest_waiting
    FROM pg_stat_archiver AS s
    CROSS JOIN LATERAL (
        SELECT count(*) AS waiting, min(modification) AS oldest_waiting
        FROM pg_ls_archive_statusdir()
        WHERE name LIKE '%.ready'
    ) AS w
    """
)


@dataclass(frozen=True)
class ArchiverStatus:
    """How the server's WAL archiving goes: its counters and what waits to be archived."""

    archive_mode: str
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    waiting: int
    oldest_waiting: datetime | None


def archiver_status(conn: Connection) -> ArchiverStatus:
    """Return the archiver's state (needs pg_monitor, or a superuser, for the backlog)."""
    try:
        row = conn.execute(_STATUS).one()
    except Exception as exc:
        if "permission denied" in str(exc):
            raise CheckSkipped(
                "reading pg_wal/archive_status needs the pg_monitor role: "
                "GRANT pg_monitor TO the role pgwarden connects as."
            ) from None
        raise
    return ArchiverStatus(**row._mapping)


def archiving_findings(
    status: ArchiverStatus, *, warning_lag_seconds: float = WARNING_LAG_SECONDS
) -> list[Finding]:
    """Turn a failing archive_command, or segments waiting too long, into findings."""
    if status.archive_mode == "off":
        return []
    details = {k: str(v) if isinstance(v, datetime) else v for k, v in asdict(status).items()}
    findings = []
    failing = status.last_failed_time is not None and (
        status.last_archived_time is None or status.last_failed_time > status.last_archived_time
    )
    if failing:
        findings.append(
            Finding(
                check="wal_archiving",
                severity="critical",
                what=f"archive_command fails: last on {status.last_failed_wal} at "
                f"{status.last_failed_time:%Y-%m-%d %H:%M:%S %Z}",
                why="WAL that is not archived cannot be restored: point-in-time recovery "
                "stops at the last archived segment, and pg_wal grows until the disk fills.",
                fix=None,
                subject=status.last_failed_wal,
                details=details,
            )
        )
    if status.oldest_waiting is not None:
        age = (datetime.now(UTC) - status.oldest_waiting).total_seconds()
        if age >= warning_lag_seconds and not failing:
            findings.append(
                Finding(
                    check="wal_archiving",
                    severity="warning",
                    what=f"{status.waiting} WAL segments wait to be archived, the oldest "
                    f"for {age:.0f} s",
                    why="Archiving lags behind the writes: what is not archived yet would "
                    "be lost with this server. Check that `pgwarden wal archive` runs.",
                    fix=None,
                    subject=None,
                    details=details,
                )
            )
    return findings


def _wal_archiving(
    conn: Connection, *, warning_lag_seconds: float = WARNING_LAG_SECONDS
) -> list[Finding]:
    return archiving_findings(archiver_status(conn), warning_lag_seconds=warning_lag_seconds)


def drill_findings(
    last_passed: datetime | None, *, max_age_days: float = DRILL_MAX_AGE_DAYS
) -> list[Finding]:
    """Warn when no restore drill passed within ``max_age_days``."""
    if last_passed is not None and datetime.now(UTC) - last_passed < timedelta(days=max_age_days):
        return []
    when = f"since {last_passed:%Y-%m-%d}" if last_passed else "ever"
    return [
        Finding(
            check="pitr_drill",
            severity="warning",
            what=f"no restore drill has passed {when}",
            why="A backup nobody has restored is a hope, not a backup: a drill restores to "
            "a random recent moment and proves the rows and indexes.",
            fix="pgwarden pitr drill --scratch DIR --port PORT",
            subject=None,
        )
    ]


def _pitr_drill(conn: Connection, *, max_age_days: float = DRILL_MAX_AGE_DAYS) -> list[Finding]:
    mode = conn.execute(text("SELECT current_setting('archive_mode')")).scalar_one()
    if mode == "off":
        return []
    from pgwarden.config import load_settings
    from pgwarden.errors import PgwardenError

    try:
        settings = load_settings()
        if not settings.backup_storage:
            raise CheckSkipped("PGWARDEN_BACKUP_STORAGE is not set: no drills to read.")
        from pgwarden.backup.pitr_status import drill_records
        from pgwarden.backup.storage import open_storage

        records = drill_records(open_storage(settings))
    except PgwardenError as exc:
        raise CheckSkipped(f"cannot read the restore drills: {exc.message}") from None
    passed = [record.started_at for record in records if record.ok]
    return drill_findings(max(passed, default=None), max_age_days=max_age_days)


CHECKS = (
    Check(
        "wal_archiving",
        "archiving",
        "archive_command failing, or WAL waiting too long to be archived",
        _wal_archiving,
        scope="cluster",
    ),
    Check(
        "pitr_drill",
        "archiving",
        "no restore drill passed recently (reads PGWARDEN_BACKUP_STORAGE)",
        _pitr_drill,
        scope="cluster",
    ),
)
