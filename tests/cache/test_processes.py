"""Across processes: a commit invalidates before it returns, and no read is ever stale."""

from __future__ import annotations

import multiprocessing
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cache_support import Base, Counter, worker
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgwarden.testing.servers import TestServer

KEYS = range(3)


class Peer:
    """Another process with its own engine and cache, driven through a pipe."""

    def __init__(self, url: str, redis_url: str, namespace: str) -> None:
        # Forked: the child starts with everything imported, and makes its own engine.
        context = multiprocessing.get_context("fork")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=worker, args=(url, redis_url, namespace, theirs), daemon=True
        )
        self.process.start()
        assert self.ask(None, timeout=60) == "ready"

    def ask(self, command: tuple[Any, ...] | None, *, timeout: float = 30) -> Any:
        if command is not None:
            self.pipe.send(command)
        assert self.pipe.poll(timeout), "the peer process did not answer"
        return self.pipe.recv()

    def stop(self) -> None:
        self.pipe.send(("stop",))
        self.process.join(10)


@pytest.fixture(scope="module")
def engine(pg_server: TestServer) -> Iterator[Engine]:
    """Yield an engine on a database of this module's own, with counters at 0."""
    name = pg_server.create_database()
    engine = sa.create_engine(pg_server.url(name), poolclass=NullPool)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Counter(key=k, value=0) for k in KEYS])
        session.commit()
    yield engine
    engine.dispose()
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def peers(engine: Engine, redis_url: str) -> Iterator[list[Peer]]:
    """Yield two processes reading and writing the counters through one cache namespace."""
    url = engine.url.render_as_string(hide_password=False)
    namespace = f"pgwarden-test:{secrets.token_hex(4)}"
    started = [Peer(url, redis_url, namespace) for _ in range(2)]
    yield started
    for peer in started:
        peer.stop()


def test_a_commit_invalidates_another_process_before_it_returns(peers: list[Peer]) -> None:
    reader, writer = peers
    for value, how in enumerate(["orm", "core", "text"], start=100):
        reader.ask(("read", 1))
        before = reader.ask(("stats",)).hits
        reader.ask(("read", 1))
        assert reader.ask(("stats",)).hits == before + 1  # the reader holds it in Redis
        assert writer.ask(("write", 1, value, how)) == "committed"
        # The writer's commit has returned: the reader's very next read sees it.
        assert reader.ask(("read", 1)) == value


class ReadsAndWrites(RuleBasedStateMachine):
    """Two processes read and write counters; every read sees the last committed write."""

    peers: list[Peer]
    engine: Engine

    @initialize()
    def reset(self) -> None:
        self.model = dict.fromkeys(KEYS, 0)
        self.version = 0
        with self.engine.begin() as conn:
            conn.execute(sa.update(Counter).values(value=0))
        # The reset went around the peers: every entry goes with the epoch.
        self.peers[0].ask(("write", 0, 0, "core"))

    @rule(
        peer=st.sampled_from([0, 1]),
        key=st.sampled_from(KEYS),
        how=st.sampled_from(["orm", "core", "text"]),
    )
    def write(self, peer: int, key: int, how: str) -> None:
        self.version += 1
        assert self.peers[peer].ask(("write", key, self.version, how)) == "committed"
        self.model[key] = self.version

    @rule(peer=st.sampled_from([0, 1]), key=st.sampled_from(KEYS))
    def read(self, peer: int, key: int) -> None:
        assert self.peers[peer].ask(("read", key)) == self.model[key]

    @invariant()
    def both_agree(self) -> None:
        for key in KEYS:
            assert self.peers[0].ask(("read", key)) == self.peers[1].ask(("read", key))


def test_no_process_ever_reads_a_value_older_than_the_last_commit(
    peers: list[Peer], engine: Engine
) -> None:
    ReadsAndWrites.peers = peers
    ReadsAndWrites.engine = engine
    run = ReadsAndWrites.TestCase
    run.settings = settings(
        max_examples=12,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    run().runTest()
    assert sum(peer.ask(("stats",)).hits for peer in peers) > 0
