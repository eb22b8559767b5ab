"""Slow queries and N+1s reach a real Sentry client, through an in-memory transport."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sentry_sdk
import sqlalchemy as sa
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from sqlalchemy.engine import Engine

from pgwarden import observe
from pgwarden.observe.sentry import install_sentry, uninstall_sentry
from pgwarden_test_support import line_of


class Memory(Transport):
    """Keep what the client sends instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[Any]:
        found = [e.get_event() for e in self.envelopes]
        return [event for event in found if event is not None]

    def transactions(self) -> list[Any]:
        found = [e.get_transaction_event() for e in self.envelopes]
        return [event for event in found if event is not None]


def _reset_scopes() -> None:
    for scope in (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
        scope.clear()


@pytest.fixture
def sent() -> Iterator[Memory]:
    transport = Memory()
    _reset_scopes()
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        auto_enabling_integrations=False,
        traces_sample_rate=1.0,
    )
    assert install_sentry()
    yield transport
    uninstall_sentry()
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    _reset_scopes()


@pytest.fixture
def engine(pg_engine: Engine) -> Iterator[Engine]:
    observe.instrument(pg_engine, metrics=False, slow_ms=20)
    yield pg_engine
    observe.uninstrument(pg_engine)


def crumbs(event: dict[str, Any], category: str) -> list[dict[str, Any]]:
    return [c for c in event["breadcrumbs"]["values"] if c.get("category") == category]


def test_a_slow_query_leaves_a_breadcrumb_on_the_next_event(engine: Engine, sent: Memory) -> None:
    assert install_sentry()  # again: still one breadcrumb per slow query
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        conn.execute(  # slow line
            sa.text("SELECT pg_sleep(0.05), CAST(:token AS text), 'inline-secret'"),
            {"token": "hunter2"},
        )
    sentry_sdk.capture_message("after the slow query")
    [event] = sent.events()
    [crumb] = crumbs(event, "query.slow")
    line = line_of(__file__, "# slow line")
    assert crumb["level"] == "warning"
    assert crumb["message"].startswith("slow query ")
    assert crumb["message"].endswith(f"test_sentry.py:{line}")
    assert crumb["data"]["duration_ms"] >= 50
    assert crumb["data"]["query"] == "SELECT pg_sleep($2), CAST($1 AS text), $3"
    text = json.dumps(event)
    assert "hunter2" not in text and "inline-secret" not in text


def test_inside_a_transaction_a_slow_query_is_a_span(engine: Engine, sent: Memory) -> None:
    with sentry_sdk.start_transaction(name="nightly report", op="task"), engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_sleep(0.05)"))  # slow span
    [transaction] = sent.transactions()
    [span] = [s for s in transaction["spans"] if s["op"] == "db.query.slow"]
    assert span["description"] == "SELECT pg_sleep($1)"
    assert span["data"]["code.lineno"] == line_of(__file__, "# slow span")
    assert span["data"]["pgwarden.call_site"].endswith(f":{line_of(__file__, '# slow span')}")
    took = datetime.fromisoformat(span["timestamp"]) - datetime.fromisoformat(
        span["start_timestamp"]
    )
    assert 0.05 <= took.total_seconds() < 1.0


def test_an_nplusone_is_a_breadcrumb_and_span_data(engine: Engine, sent: Memory) -> None:
    with sentry_sdk.start_transaction(name="list page", op="http.server"):
        with engine.connect() as conn, observe.watch(mode="log"):
            for number in range(3):
                conn.execute(sa.text("SELECT :n, 'inline-secret'"), {"n": number})  # loop
        sentry_sdk.capture_message("after the loop")
    [event] = sent.events()
    [crumb] = crumbs(event, "query.nplusone")
    assert crumb["data"]["kind"] == "repeated_statement"
    assert crumb["data"]["call_site"].endswith(f":{line_of(__file__, '# loop')}")
    assert "ran 3 times" in crumb["message"]
    assert "inline-secret" not in json.dumps(event)
    [transaction] = sent.transactions()
    assert transaction["contexts"]["trace"]["data"]["pgwarden.nplusone"] == 1


def test_breadcrumbs_and_spans_can_be_turned_off(engine: Engine, sent: Memory) -> None:
    assert install_sentry(breadcrumbs=False, spans=False)
    with sentry_sdk.start_transaction(name="quiet", op="task"):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(0.05)"))
        sentry_sdk.capture_message("nothing to say")
    [event] = sent.events()
    assert crumbs(event, "query.slow") == []
    [transaction] = sent.transactions()
    assert not [s for s in transaction["spans"] if s["op"] == "db.query.slow"]


def test_without_sentry_sdk_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    assert install_sentry() is False
