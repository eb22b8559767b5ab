"""Replica routing against a real streaming standby made from a real primary."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgwarden.config import load_settings
from pgwarden.db.engines import create_engine
from pgwarden.errors import ConfigError, UserError
from pgwarden.orm import (
    ReplicaScopeMiddleware,
    ReplicaSet,
    RoutingSession,
    routing_scope,
    routing_scope_dependency,
    routing_sessionmaker,
    use_primary,
)
from pgwarden.testing.servers import TestServer, free_port
from pgwarden_test_support import install_for
from replica_support import Pair, streaming_pair


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


@pytest.fixture(scope="module")
def pair(pg_server: TestServer) -> Iterator[Pair]:
    """Yield a primary with table ``items`` and a standby streaming from it."""
    with streaming_pair(install_for(pg_server)) as pair:
        pair.sql(pair.primary, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        pair.wait_replayed()
        yield pair


@dataclass
class Seen:
    """The statements each server received, by role."""

    statements: dict[str, list[str]] = field(default_factory=lambda: {"primary": [], "standby": []})

    def watch(self, engine: sa.Engine, role: str) -> None:
        @sa.event.listens_for(engine, "before_cursor_execute")
        def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
            if "pg_last_wal_replay_lsn" not in statement and "pg_current_wal_lsn" not in statement:
                self.statements[role].append(statement)

    def writes_on_standby(self) -> list[str]:
        words = ("INSERT", "UPDATE", "DELETE", "CREATE", "SET_CONFIG")
        return [s for s in self.statements["standby"] if s.lstrip().upper().startswith(words)]


@pytest.fixture
def routed(pair: Pair) -> Iterator[tuple[ReplicaSet, Seen]]:
    """Yield a ReplicaSet over the pair with a fresh table, and what each server ran."""
    primary = create_engine(pair.primary.url(), pool_size=2, max_overflow=2)
    standby = create_engine(pair.standby.url(), pool_size=2, max_overflow=2)
    with primary.begin() as conn:
        conn.execute(sa.text("TRUNCATE items"))
    pair.wait_replayed()
    seen = Seen()
    seen.watch(primary, "primary")
    seen.watch(standby, "standby")
    replicas = ReplicaSet(primary, [standby], max_lag=30, check_interval=0.2)
    try:
        yield replicas, seen
    finally:
        assert seen.writes_on_standby() == []
        replicas.dispose()


def served_by(session: RoutingSession) -> str:
    """Return which server answers the session's next read: by asking it."""
    flag = session.scalar(sa.text("SELECT pg_is_in_recovery()").execution_options(route="replica"))
    return "standby" if flag else "primary"


def test_reads_go_to_the_replica_writes_to_the_primary(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, seen = routed
    Session = routing_sessionmaker(replicas)
    with Session() as session:
        assert served_by(session) == "standby"
        assert session.scalars(sa.select(Item)).all() == []
        session.add(Item(id=1, name="first"))
        session.commit()
        # the session wrote: the rest of it reads from the primary, its own write too
        assert session.get(Item, 1) is not None
        assert served_by(session) == "primary"
    assert any(s.startswith("INSERT INTO items") for s in seen.statements["primary"])
    pair.wait_replayed()
    with Session() as session:
        assert served_by(session) == "standby"
        assert session.scalar(sa.select(Item.name).where(Item.id == 1)) == "first"
        with use_primary():
            assert served_by(session) == "primary"  # a new transaction would pin...
        session.rollback()
        with use_primary():
            assert served_by(session) == "primary"
        locked = sa.select(Item).where(Item.id == 1).with_for_update()
        assert session.scalars(locked).one().name == "first"
        assert served_by(session) == "primary"  # the transaction locked rows: primary
    with Session() as session:  # text SQL may write: the primary, unless marked otherwise
        session.execute(sa.text("UPDATE items SET name = name || '' WHERE id = 1"))
        session.commit()
    stats = replicas.stats()
    assert stats.writes >= 3 and stats.to_replica >= 3


def test_read_your_writes_holds_while_the_replica_lags(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, _ = routed
    Session = routing_sessionmaker(replicas)
    with pair.replay_paused(), routing_scope():
        with Session() as session:
            assert served_by(session) == "standby"
            session.add(Item(id=2, name="mine"))
            session.commit()
        with Session() as other:  # another session of the same request
            assert other.scalar(sa.select(Item.name).where(Item.id == 2)) == "mine"
            assert served_by(other) == "primary"
        with routing_scope(), Session() as elsewhere:  # another request: the lag is real
            assert elsewhere.get(Item, 2) is None
            assert served_by(elsewhere) == "standby"


def test_lsn_read_your_writes_returns_to_the_replica_once_it_replayed(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, _ = routed
    replicas.lsn_read_your_writes = True
    Session = routing_sessionmaker(replicas)
    with routing_scope() as unit:
        with pair.replay_paused():
            with Session() as session:
                session.add(Item(id=3, name="lsn"))
                session.commit()
                assert unit.write_lsn is not None
            with Session() as session:
                assert session.scalar(sa.select(Item.name).where(Item.id == 3)) == "lsn"
                assert served_by(session) == "primary"
        assert replicas.stats().skipped_behind >= 1
        pair.wait_replayed()
        with Session() as session:
            assert session.scalar(sa.select(Item.name).where(Item.id == 3)) == "lsn"
            assert served_by(session) == "standby"


def test_a_replica_lagging_over_the_bound_is_skipped(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, _ = routed
    replicas.max_lag = 0.3
    Session = routing_sessionmaker(replicas)
    with pair.replay_paused():
        with Session() as session:
            session.add(Item(id=4, name="behind"))
            session.commit()
        (status,) = replicas.status()
        while status.lag_seconds is not None and status.lag_seconds <= 0.3:
            (status,) = replicas.status()
        assert not status.usable and status.paused and "behind" in (status.reason or "")
        with Session() as session:
            assert session.get(Item, 4) is not None  # the primary answered
            assert served_by(session) == "primary"
    assert replicas.stats().skipped_lag >= 1
    pair.wait_replayed()
    (status,) = replicas.status()
    assert status.usable and status.lag_seconds == 0


def test_an_unreachable_replica_is_passed_over_for_the_next(
    routed: tuple[ReplicaSet, Seen], pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    del routed  # for the fresh table; this test makes its own set
    dead = create_engine(f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres")
    standby = create_engine(pair.standby.url(), pool_size=1)
    primary = create_engine(pair.primary.url(), pool_size=1)
    replicas = ReplicaSet(primary, [dead, standby], retry_after=60)
    try:
        Session = routing_sessionmaker(replicas)
        with caplog.at_level(logging.WARNING, logger="pgwarden.orm.replicas"):
            for _ in range(3):
                with Session() as session:
                    assert served_by(session) == "standby"
        assert "unreachable" in caplog.text and "hunter2" not in caplog.text
        assert replicas.stats().replica_failures == 1  # then it is left alone
        (down, up) = replicas.status(refresh=False)
        assert not down.usable and up.usable and "***" in down.url
    finally:
        replicas.dispose()


def test_reads_fall_back_when_the_replica_stops(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, _ = routed
    replicas.check_interval = 3600  # what it said stays trusted: the failure is met on connect
    Session = routing_sessionmaker(replicas)
    with Session() as session:
        assert served_by(session) == "standby"
    pair.standby.stop()
    try:
        for _ in range(2):
            with Session() as session:
                assert served_by(session) == "primary"
                session.add(Item(id=5, name="while down"))
                session.commit()
                session.execute(sa.delete(Item))
                session.commit()
        assert replicas.stats().replica_failures == 1
    finally:
        pair.standby.start()
    replicas.retry_after = 0
    with Session() as session:
        assert served_by(session) == "standby"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_sessions_route_the_same_way(pair: Pair) -> None:
    from pgwarden.db.engines import create_async_engine
    from pgwarden.orm import async_routing_sessionmaker

    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    replicas = ReplicaSet(
        create_async_engine(pair.primary.url(), driver="asyncpg", pool_size=1),
        [
            create_async_engine(dead, driver="asyncpg"),  # unreachable: passed over
            create_async_engine(pair.standby.url(), driver="asyncpg", pool_size=1),
        ],
    )
    Session = async_routing_sessionmaker(replicas)
    probe = sa.text("SELECT pg_is_in_recovery()").execution_options(route="replica")
    try:
        with routing_scope():
            async with Session() as session:
                assert await session.scalar(probe) is True
                session.add(Item(id=6, name="async"))
                await session.commit()
                assert await session.scalar(probe) is False
                await session.execute(sa.delete(Item).where(Item.id == 6))
                await session.commit()
        for _ in range(2):
            async with Session() as session:
                assert await session.scalar(probe) is True
        assert replicas.stats().replica_failures == 1
    finally:
        await replicas.dispose_async()


@pytest.mark.anyio
async def test_the_middleware_makes_each_request_a_unit(
    routed: tuple[ReplicaSet, Seen], pair: Pair
) -> None:
    replicas, _ = routed
    Session = routing_sessionmaker(replicas)
    answers: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        with Session() as session:
            if scope["path"] == "/write":
                session.add(Item(id=7, name="request"))
                session.commit()
        with Session() as session:
            answers.append(served_by(session))

    wrapped = ReplicaScopeMiddleware(app)  # type: ignore[arg-type]
    with pair.replay_paused():
        await wrapped({"type": "http", "path": "/write"}, None, None)  # type: ignore[arg-type]
        await wrapped({"type": "http", "path": "/read"}, None, None)  # type: ignore[arg-type]
    assert answers == ["primary", "standby"]


def test_settings_name_several_replicas(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pair.primary.url())
    monkeypatch.setenv("DATABASE_REPLICA_URL", f"{pair.standby.url()}, {pair.standby.url()}")
    replicas = ReplicaSet.from_settings(load_settings(), max_lag="2s")
    try:
        assert len(replicas.replicas) == 2 and replicas.max_lag == 2
        assert [s.usable for s in replicas.status()] == [True, True]
        assert all("***" in s.url for s in replicas.status(refresh=False))
    finally:
        replicas.dispose()


def test_bad_configuration_is_refused(pair: Pair) -> None:
    from pgwarden.db.engines import create_async_engine

    primary = create_engine(pair.primary.url())
    with pytest.raises(ConfigError):
        ReplicaSet(primary, [create_async_engine(pair.standby.url())])
    with pytest.raises(UserError) as caught:
        ReplicaSet(primary, [], max_lag="a while")
    assert caught.value.hint
    with pytest.raises(ConfigError):
        ReplicaSet.from_settings(load_settings())  # no DATABASE_URL
    primary.dispose()


def test_the_fastapi_dependency_opens_one_unit_per_request() -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from pgwarden.orm.replica_scope import current_unit

    units: list[int] = []
    app = FastAPI(dependencies=[Depends(routing_scope_dependency)])

    @app.get("/")
    async def endpoint() -> bool:
        unit = current_unit()
        assert unit is not None
        units.append(id(unit))
        unit.wrote = True
        return True

    with TestClient(app) as client:
        assert client.get("/").json() and client.get("/").json()
    assert len(units) == 2 and current_unit() is None


def test_routing_is_published_as_prometheus_metrics(routed: tuple[ReplicaSet, Seen]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from pgwarden.orm.replica_metrics import publish_replica_metrics

    replicas, _ = routed
    registry = CollectorRegistry()
    publish_replica_metrics(replicas, name="app", registry=registry)
    with routing_sessionmaker(replicas)() as session:
        assert served_by(session) == "standby"
    text = generate_latest(registry).decode()
    assert 'pgwarden_replica_routed_replica_total{set="app"} 1.0' in text
    port = replicas.replicas[0].url.port
    assert f'pgwarden_replica_usable{{replica="127.0.0.1:{port}",set="app"}} 1.0' in text
    assert "pgwarden_replica_lag_seconds{" in text and "***" not in text


def test_the_metrics_name_their_extra_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgwarden.errors import NotEnabled
    from pgwarden_test_support import forbid_import

    forbid_import(monkeypatch, "prometheus_client", "pgwarden.orm.replica_metrics")
    with pytest.raises(NotEnabled) as caught:
        import pgwarden.orm.replica_metrics  # noqa: F401
    assert "pgwarden[metrics]" in (caught.value.hint or "")


def test_the_replicas_command_reports_each_replica(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from pgwarden.cli.main import cli

    runner = CliRunner()
    password = sa.make_url(pair.standby.url()).password
    assert password
    monkeypatch.setenv("DATABASE_REPLICA_URL", pair.standby.url())
    shown = runner.invoke(cli, ["replicas", "--max-lag", "5s"])
    assert shown.exit_code == 0, shown.output
    assert "yes" in shown.output and password not in shown.output
    listed = runner.invoke(cli, ["--json", "replicas", "--replica-url", pair.primary.url()])
    assert listed.exit_code == 0, listed.output
    (status,) = json.loads(listed.output)
    assert status["usable"] and status["in_recovery"] is False and password not in listed.output
    with pair.replay_paused():
        pair.sql(pair.primary, "INSERT INTO items VALUES (100, 'lagging')")
        deadline = 50
        command = ["--json", "replicas", "--max-lag", "100ms"]
        while (late := runner.invoke(cli, command)).exit_code == 0:
            deadline -= 1
            assert deadline, "the paused standby never showed lag"
        assert late.exit_code == 1, late.output
        (status,) = json.loads(late.output)
        assert status["paused"] and not status["usable"] and status["lag_seconds"] > 0.1
    pair.sql(pair.primary, "DELETE FROM items WHERE id = 100")
    monkeypatch.delenv("DATABASE_REPLICA_URL")
    none = runner.invoke(cli, ["replicas"])
    assert none.exit_code == 2 and "DATABASE_REPLICA_URL" in none.output
