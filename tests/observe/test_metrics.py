"""Prometheus metrics fed by real statements on real engines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine, make_url

from pgwarden import observe
from pgwarden.db.engines import create_async_engine, create_engine
from pgwarden.observe import instrument, uninstrument
from pgwarden.observe.metrics import OTHER, EngineMetrics, metrics_text

DURATION = "pgwarden_db_statement_duration_seconds"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def engine(pg_engine: Engine, registry: CollectorRegistry) -> Iterator[Engine]:
    instrument(pg_engine, name="main", registry=registry, slow_ms=20)
    yield pg_engine
    uninstrument(pg_engine)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_each_statement_is_counted_under_its_fingerprint(
    engine: Engine, registry: CollectorRegistry
) -> None:
    with engine.connect() as conn:
        for number in range(5):
            conn.execute(sa.text(f"SELECT {number} AS n WHERE {number} >= 0"))
        for number in range(3):
            conn.execute(sa.text("SELECT :n AS n"), {"n": number})
    literal = observe.fingerprint("SELECT 0 AS n WHERE 0 >= 0")
    bound = observe.fingerprint("SELECT %(n)s AS n")
    assert value(registry, f"{DURATION}_count", engine="main", fingerprint=literal) == 5
    assert value(registry, f"{DURATION}_count", engine="main", fingerprint=bound) == 3
    assert value(registry, f"{DURATION}_sum", engine="main", fingerprint=literal) > 0
    # The total is every statement the engine ran, whatever its shape.
    counts = [
        sample.value
        for metric in registry.collect()
        if metric.name == DURATION
        for sample in metric.samples
        if sample.name.endswith("_count")
    ]
    assert value(registry, "pgwarden_db_statements_total", engine="main") == sum(counts) >= 8
    assert value(registry, "pgwarden_db_slow_statements_total", engine="main") == 0


def test_shapes_beyond_the_limit_share_the_label_other(
    engine: Engine, registry: CollectorRegistry
) -> None:
    shapes = 205
    with engine.connect() as conn:
        for number in range(shapes):
            conn.execute(sa.text(f"SELECT x{number} FROM (SELECT 1 AS x{number}) AS s"))
    labels = {
        sample.labels["fingerprint"]
        for metric in registry.collect()
        if metric.name == DURATION
        for sample in metric.samples
        if sample.name.endswith("_count")
    }
    assert len(labels) == 201 and OTHER in labels
    assert value(registry, f"{DURATION}_count", engine="main", fingerprint=OTHER) >= 5


def test_slow_statements_are_counted(engine: Engine, registry: CollectorRegistry) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_sleep(0.05)"))
        conn.execute(sa.text("SELECT 1"))
    assert value(registry, "pgwarden_db_slow_statements_total", engine="main") == 1


def test_pool_gauges_are_read_at_scrape_time(engine: Engine, registry: CollectorRegistry) -> None:
    def gauge(name: str) -> float:
        return value(registry, f"pgwarden_db_pool_{name}", engine="main")

    with engine.connect() as a, engine.connect() as b, engine.connect() as c:
        for conn in (a, b, c):
            conn.execute(sa.text("SELECT 1"))
        assert (gauge("size"), gauge("checked_out"), gauge("overflow")) == (2, 3, 1)
        assert gauge("longest_held_seconds") > 0
    assert (gauge("checked_out"), gauge("overflow")) == (0, 0)
    assert gauge("wait_seconds_total") == 0 and gauge("waits_total") == 0


def test_a_pool_wait_shows_in_the_metrics(pg_url: str, registry: CollectorRegistry) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    instrument(engine, name="tight", registry=registry)
    try:
        with engine.connect(), pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        assert value(registry, "pgwarden_db_pool_waits_total", engine="tight") == 1
        assert value(registry, "pgwarden_db_pool_wait_seconds_total", engine="tight") >= 0.19
    finally:
        uninstrument(engine)
        engine.dispose()


def test_nplusone_findings_are_counted_by_kind(engine: Engine, registry: CollectorRegistry) -> None:
    kind = "pgwarden_db_nplusone_total"
    assert value(registry, kind, kind="repeated_statement") == 0
    with engine.connect() as conn, observe.watch(mode="log"):
        for number in range(3):
            conn.execute(sa.text("SELECT :n"), {"n": number})
    assert value(registry, kind, kind="repeated_statement") == 1
    assert value(registry, kind, kind="lazy_load") == 0


def test_two_engines_share_a_registry_under_different_names(
    pg_engine: Engine, pg_url: str, registry: CollectorRegistry
) -> None:
    other = create_engine(pg_url, pool_size=1, max_overflow=0)
    first = instrument(pg_engine, registry=registry)
    second = instrument(other, registry=registry)
    try:
        assert first.metrics.name == make_url(pg_url).database
        assert second.metrics.name == f"{first.metrics.name}-2"
        for target in (pg_engine, other, other):
            with target.connect() as conn:
                conn.execute(sa.text("SELECT 42"))
        shape = observe.fingerprint("SELECT 42")
        for label, runs in ((first.metrics.name, 1), (second.metrics.name, 2)):
            assert value(registry, f"{DURATION}_count", engine=label, fingerprint=shape) == runs
            assert value(registry, "pgwarden_db_pool_size", engine=label) in (1, 2)
        uninstrument(other)
        assert (
            value(registry, f"{DURATION}_count", engine=second.metrics.name, fingerprint=shape) == 0
        )
        assert (
            registry.get_sample_value("pgwarden_db_pool_size", {"engine": second.metrics.name})
            is None
        )
        assert (
            value(registry, f"{DURATION}_count", engine=first.metrics.name, fingerprint=shape) == 1
        )
    finally:
        uninstrument(pg_engine)
        uninstrument(other)
        other.dispose()
    # The last engine gone, the registry holds nothing of pgwarden; it can start again.
    assert b"pgwarden_" not in metrics_text(registry)
    instrument(pg_engine, registry=registry)
    uninstrument(pg_engine)


def test_the_global_registry_is_the_default(pg_engine: Engine) -> None:
    found = instrument(pg_engine, name="global-default")
    try:
        with pg_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert b'pgwarden_db_statements_total{engine="global-default"}' in metrics_text()
    finally:
        uninstrument(pg_engine)
    assert found.metrics.closed
    assert b"global-default" not in metrics_text()


def test_no_password_url_or_statement_text_reaches_the_metrics(
    pg_engine: Engine, pg_url: str, registry: CollectorRegistry
) -> None:
    import secrets

    secret = "hunter2-secret"
    role = f"app_{secrets.token_hex(4)}"  # roles are cluster-wide: never reuse a name
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'"))
    url = make_url(pg_url).set(username=role, password=secret)
    engine = create_engine(url, pool_size=1, max_overflow=0)
    instrument(engine, registry=registry)
    named = EngineMetrics(engine, name=url.render_as_string(hide_password=False), registry=registry)
    keyed = EngineMetrics(engine, name=f"host=db password={secret}", registry=registry)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SELECT '{secret}' AS leaked_column"))
        named.statement(observe.fingerprint("SELECT 1"), 0.001, slow=False)
        text = metrics_text(registry).decode()
    finally:
        named.close()
        keyed.close()
        uninstrument(engine)
        engine.dispose()
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP ROLE {role}"))
    assert secret not in text
    assert "leaked_column" not in text
    assert "postgresql" not in text
    assert named.name == f"{url.database}-2"  # a URL given as a name keeps its database only


def test_an_async_engine_is_measured(pg_url: str, registry: CollectorRegistry) -> None:
    engine = create_async_engine(pg_url, pool_size=2, max_overflow=0)

    async def main() -> None:
        instrument(engine, name="async", registry=registry)
        try:
            async with engine.connect() as conn:
                for _ in range(4):
                    await conn.execute(sa.text("SELECT 7"))
                assert value(registry, "pgwarden_db_pool_checked_out", engine="async") == 1
            shape = observe.fingerprint("SELECT 7")
            assert value(registry, f"{DURATION}_count", engine="async", fingerprint=shape) == 4
        finally:
            uninstrument(engine)
            await engine.dispose()

    asyncio.run(main())


def test_threads_that_end_keep_their_counts_but_not_their_slots(pg_engine: Engine) -> None:
    import threading

    registry = CollectorRegistry()
    observe.instrument(pg_engine, registry=registry, metrics=True)
    try:

        def one() -> None:
            with pg_engine.connect() as conn:
                conn.execute(sa.text("SELECT 'from a short thread'"))

        for _ in range(20):
            worker = threading.Thread(target=one)
            worker.start()
            worker.join()
        inst = observe.instrumentation(pg_engine)
        assert inst is not None and inst.metrics is not None
        counts = inst.metrics.durations()
        assert sum(sum(slot[:-1]) for slot in counts.values()) >= 20
        assert len(inst.metrics._threads) <= 1
    finally:
        observe.uninstrument(pg_engine)
