"""Replication lag checks, on a server with no standby.

A streaming standby is not built here, so lag is checked as a primary with none, and
the standby query is run on a primary, where it must answer ``None`` without error.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.replication import (
    ReplicaLag,
    StandbyLag,
    check_replication,
    replica_lag,
    replication_lag_findings,
    standby_lag,
)


def test_a_primary_without_standbys_has_no_lag(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert replica_lag(conn) == []
        assert standby_lag(conn) is None  # runs on a primary, and says it is not a standby
        [lag] = check_replication(conn)

    assert (lag.check, lag.skipped, lag.findings) == ("replication_lag", None, [])


def test_replication_as_a_pg_monitor_role(pg_engine: Engine, monitor_role: str) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        [lag] = check_replication(conn)
        assert standby_lag(conn) is None

    assert (lag.skipped, lag.findings) == (None, [])


# No streaming standby exists in the tests: these feed the findings rows shaped as the
# two queries return them, to check the thresholds and the advice.
def test_lag_thresholds_and_a_paused_standby() -> None:
    def replica(seconds: float | None, behind: int | None) -> ReplicaLag:
        return ReplicaLag(
            pid=4242,
            application_name="replica_a",
            client_addr="10.0.0.7",
            state="streaming",
            sync_state="sync",
            sent_lsn="0/3000000",
            replay_lsn="0/2000000",
            write_lag_seconds=None,
            flush_lag_seconds=None,
            replay_lag_seconds=seconds,
            bytes_behind=behind,
        )

    assert replication_lag_findings([replica(None, None), replica(5.0, 1024)]) == []
    [warning] = replication_lag_findings([replica(75.0, 16 * 1024**2)])
    assert warning.severity == "warning"
    assert warning.what == "replica replica_a at 10.0.0.7 is 75.0 s and 16 MB of WAL behind"
    assert "synchronous standby" in warning.why
    [by_bytes] = replication_lag_findings([replica(None, 2 * 1024**3)])
    assert (by_bytes.severity, by_bytes.fix) == ("warning", None)
    [critical] = replication_lag_findings([replica(5.0, 0)], warning_seconds=1, critical_seconds=5)
    assert critical.severity == "critical"

    paused = StandbyLag(
        receive_lsn="0/5000000",
        replay_lsn="0/4000000",
        bytes_behind=16 * 1024**2,
        delay_seconds=30.0,
        last_replayed_at=None,
        replay_paused=True,
        receiver_status="streaming",
    )
    [finding] = replication_lag_findings([], paused)
    assert finding.fix == "SELECT pg_wal_replay_resume();"
