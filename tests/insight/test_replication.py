"""Replication checks: a real inactive slot, and a server with no standby.

A streaming standby is not built here, so lag is checked as a primary with none, and
the standby query is run on a primary, where it must answer ``None`` without error.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.replication import (
    ReplicaLag,
    StandbyLag,
    check_replication,
    replica_lag,
    replication_lag_findings,
    replication_slot_findings,
    replication_slots,
    standby_lag,
)


@pytest.fixture
def slot(pg_engine: Engine) -> Iterator[str]:
    """Yield the name of a new physical slot that reserved WAL and that nothing reads."""
    name = f"pgwarden_test_{secrets.token_hex(4)}"  # slots are cluster-wide
    with pg_engine.connect() as conn:
        if conn.execute(sa.text("SHOW wal_level")).scalar_one() == "minimal":
            pytest.skip("wal_level = minimal: this server cannot have replication slots")
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_create_physical_replication_slot(:name, true)"), {"name": name}
        )
    try:
        yield name
    finally:
        with pg_engine.begin() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = :name"
                ),
                {"name": name},
            )


def test_a_primary_without_standbys_has_no_lag(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert replica_lag(conn) == []
        assert standby_lag(conn) is None  # runs on a primary, and says it is not a standby
        lag, _slots = check_replication(conn)

    assert (lag.check, lag.skipped, lag.findings) == ("replication_lag", None, [])


def test_an_inactive_slot_is_reported_with_its_drop(run, pg_engine: Engine, slot: str) -> None:
    run("CREATE TABLE filler AS SELECT g, md5(g::text) FROM generate_series(1, 5000) AS g")
    with pg_engine.connect() as conn:
        [found] = [s for s in replication_slots(conn) if s.name == slot]

    assert (found.slot_type, found.active, found.temporary) == ("physical", False, False)
    assert (found.plugin, found.database, found.active_pid) == (None, None, None)
    assert found.wal_status == "reserved"
    assert found.retained_bytes is not None and found.retained_bytes > 0  # the table's WAL
    assert (found.xmin_age, found.catalog_xmin_age) == (None, None)

    [finding] = replication_slot_findings([found])
    assert finding.check == "replication_slots"
    assert finding.severity == "warning"
    assert finding.subject == slot
    assert finding.what.startswith(f"inactive physical replication slot {slot} retains ")
    assert "gone for good" in finding.why
    assert finding.fix == f"SELECT pg_drop_replication_slot('{slot}');"
    [critical] = replication_slot_findings([found], critical_retained_bytes=1)
    assert critical.severity == "critical"

    run(finding.fix)
    with pg_engine.connect() as conn:
        assert slot not in {s.name for s in replication_slots(conn)}


def test_replication_as_a_pg_monitor_role(pg_engine: Engine, monitor_role: str, slot: str) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        lag, slots = check_replication(conn)
        assert standby_lag(conn) is None

    assert (lag.skipped, lag.findings) == (None, [])
    assert slots.skipped is None
    [finding] = [f for f in slots.findings if f.subject == slot]
    assert finding.fix == f"SELECT pg_drop_replication_slot('{slot}');"


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
