"""The WAL archiving and restore drill checks of the doctor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from pgwarden.insight.archiving import (
    CHECKS,
    ArchiverStatus,
    archiver_status,
    archiving_findings,
    drill_findings,
)

NOW = datetime.now(UTC)


def status(**changes: object) -> ArchiverStatus:
    values: dict[str, object] = {
        "archive_mode": "on", "archived_count": 10, "last_archived_wal": "00000001000000000000000A",
        "last_archived_time": NOW - timedelta(minutes=5), "failed_count": 0,
        "last_failed_wal": None, "last_failed_time": None, "waiting": 0, "oldest_waiting": None,
    }  # fmt: skip
    values.update(changes)
    return ArchiverStatus(**values)  # type: ignore[arg-type]


def test_a_failing_archive_command_is_critical() -> None:
    failing = status(
        failed_count=3,
        last_failed_wal="00000001000000000000000B",
        last_failed_time=NOW - timedelta(minutes=1),
    )
    [finding] = archiving_findings(failing)
    assert finding.severity == "critical" and finding.subject == "00000001000000000000000B"
    recovered = status(failed_count=3, last_failed_time=NOW - timedelta(minutes=9))
    assert archiving_findings(recovered) == []


def test_a_backlog_older_than_the_threshold_warns() -> None:
    backlog = status(waiting=12, oldest_waiting=NOW - timedelta(minutes=10))
    [finding] = archiving_findings(backlog)
    assert finding.severity == "warning" and "12 WAL segments" in finding.what
    assert archiving_findings(backlog, warning_lag_seconds=3600) == []
    assert archiving_findings(status(archive_mode="off", waiting=12, oldest_waiting=NOW)) == []


def test_no_recent_drill_warns() -> None:
    assert drill_findings(NOW - timedelta(days=1)) == []
    [old] = drill_findings(NOW - timedelta(days=30))
    [never] = drill_findings(None)
    assert old.check == never.check == "pitr_drill" and "ever" in never.what


def test_a_server_that_does_not_archive_is_quiet(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert archiver_status(conn).archive_mode == "off"
        for check in CHECKS:
            result = check(conn)
            assert result.findings == [] and result.error is None
