"""Replication slot checks: a real inactive slot, seen by a superuser and by pg_monitor."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.slots import check_slots, replication_slot_findings, replication_slots


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


def test_slots_as_a_pg_monitor_role(pg_engine: Engine, monitor_role: str, slot: str) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        [slots] = check_slots(conn)

    assert slots.skipped is None
    [finding] = [f for f in slots.findings if f.subject == slot]
    assert finding.fix == f"SELECT pg_drop_replication_slot('{slot}');"
