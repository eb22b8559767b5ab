"""Helpers of the scheduled-job tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from pgwarden.tasks.alerts import Alert

T = TypeVar("T")


class RecordingNotifier:
    """A notifier that keeps the alerts it is given, in order.

    Findings of the ``settings`` check are left out: they come from the configuration of
    the server under test (a CI server may run with autovacuum off), not from the jobs
    and databases a test makes.
    """

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        if not alert.key.startswith("finding:settings:"):
            self.alerts.append(alert)

    def keys(self) -> list[tuple[str, str, str]]:
        return [(a.target, a.key, a.state) for a in self.alerts]


def engine(url: str) -> sa.Engine:
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.pool.NullPool
    )


def fill(url: str, rows: int = 500) -> None:
    """Create a table with ``rows`` rows (and a hostile name) in the database at ``url``."""
    eng = engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text('CREATE TABLE "select" (id bigint PRIMARY KEY, note text)'))
            conn.execute(
                sa.text(
                    'INSERT INTO "select" SELECT g, md5(g::text) FROM generate_series(1, :n) g'
                ),
                {"n": rows},
            )
    finally:
        eng.dispose()


def scalar(url: str, sql: str, **params: object) -> object:
    eng = engine(url)
    try:
        with eng.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        eng.dispose()


def wait_for(what: Callable[[], T], *, timeout: float, every: float = 1.0, why: str = "") -> T:
    """Return ``what()`` once it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {why or what}: last {value!r}")
        time.sleep(every)
