"""Reports of N+1s and slow statements: a store that cannot write loses nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pgwarden.observe.report_store import ReportStore, stored_statements
from pgwarden.observe.reports import (
    _pending,
    forget_reports,
    pending_reports,
    slow_statement_reports,
)
from pgwarden.testing.servers import free_port


@pytest.fixture(autouse=True)
def nothing_pending() -> Iterator[None]:
    forget_reports()
    yield
    forget_reports()


def test_a_store_that_cannot_write_keeps_the_records_for_later(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _pending.add_slow("SELECT * FROM t WHERE secret = 'hunter2'", 0.25, None)
    down = make_url(pg_url).set(port=free_port(), password="a-password")
    broken = ReportStore(down, interval_s=3600)
    try:
        with caplog.at_level(logging.WARNING, logger="pgwarden.observe.reports"):
            assert broken.flush() is False
            _pending.add_slow("SELECT * FROM t WHERE secret = 'x'", 0.75, None)
            assert broken.flush() is False
    finally:
        broken.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # said once per outage
    assert "a-password" not in warnings[0] and "hunter2" not in warnings[0]
    [kept] = pending_reports()[1]
    assert kept.count == 2 and kept.samples_ms == (250.0, 750.0)

    working = ReportStore(pg_url, interval_s=3600)
    try:
        assert working.flush() is True
    finally:
        working.close()
    assert pending_reports() == ([], [])
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            [stored] = stored_statements(conn)
            assert slow_statement_reports(conn) == [stored]
    finally:
        engine.dispose()
    assert (stored.count, stored.max_ms, stored.p50_ms) == (2, 750.0, 250.0)
    assert stored.statement == "SELECT * FROM t WHERE secret = $1"
