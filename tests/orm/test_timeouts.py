"""Statement and lock timeouts: scoped to the transaction, named when they fire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import pgwarden
from pgwarden.db.engines import create_async_engine, create_engine
from pgwarden.errors import UserError
from pgwarden.orm.timeouts import (
    enable_timeouts,
    timeout_options,
    timeouts,
    timeouts_dependency,
)

SHOW = sa.text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    """Yield an engine of one pooled connection, timeouts enabled, with a table ``t``."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    enable_timeouts(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, v text)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 'a')"))
    try:
        yield engine
    finally:
        engine.dispose()


def server_values(engine: sa.Engine) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(SHOW).one()
    return row[0], row[1]


def test_lock_timeout_names_the_statement_and_leaves_the_pool_clean(engine: sa.Engine) -> None:
    before = server_values(engine)
    other = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    holder = other.connect()
    holder.begin()
    holder.execute(sa.text("SELECT * FROM t WHERE id = 1 FOR UPDATE"))
    try:
        with Session(engine) as session, timeouts(lock="150ms", statement="20s"):
            assert session.execute(SHOW).one() == ("20s", "150ms")  # inside the transaction
            with pytest.raises(pgwarden.LockTimeout) as caught:
                session.execute(sa.text("UPDATE t SET v = 'secret b' WHERE id = 1"))
            session.rollback()
    finally:
        holder.rollback()
        holder.close()
        other.dispose()
    error = caught.value
    assert error.setting == "lock_timeout" and error.timeout_ms == 150
    assert "UPDATE t SET v = 'secret b' WHERE id = 1" in error.message
    assert "lock_timeout (150 ms)" in error.message and error.hint
    assert engine.pool.checkedout() == 0 and engine.pool.size() == 1
    assert server_values(engine) == before  # the same pooled connection, server values
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM t")).scalar_one() == "a"


def test_per_statement_statement_timeout_fires_on_pg_sleep_and_only_there(
    engine: sa.Engine,
) -> None:
    with Session(engine) as session, timeouts(statement="30s"):
        slow = sa.select(sa.func.pg_sleep(5)).execution_options(statement_timeout="100ms")
        assert session.execute(SHOW).one()[0] == "30s"
        with pytest.raises(pgwarden.StatementTimeout) as caught:
            session.execute(slow)
        session.rollback()
        # the next statement of the session is back on the block's value
        assert session.execute(SHOW).one()[0] == "30s"
    assert caught.value.timeout_ms == 100
    assert "statement_timeout (100 ms) cancelled the statement: SELECT pg_sleep(" in str(
        caught.value
    )
    assert server_values(engine) == ("0", "0")


def test_session_execution_options_and_nesting(engine: sa.Engine) -> None:
    with (
        timeouts(statement="10s", lock="1s"),
        timeouts(lock="2s"),
        Session(engine, execution_options=timeout_options(statement="3s")) as session,
    ):
        assert session.execute(SHOW).one() == ("3s", "2s")
        fast = sa.text("SELECT 1").execution_options(lock_timeout=250)
        session.execute(fast)
        assert session.execute(SHOW).one() == ("3s", "2s")
    with Session(engine) as session:
        assert session.execute(SHOW).one() == ("0", "0")


def test_a_savepoint_rolled_back_does_not_confuse_what_is_set(engine: sa.Engine) -> None:
    with Session(engine) as session, timeouts(statement="4s"):
        with session.begin_nested() as nested:
            with timeouts(statement="1s"):
                assert session.execute(SHOW).one()[0] == "1s"
            nested.rollback()
        assert session.execute(SHOW).one()[0] == "4s"


def test_bad_values_are_refused_with_a_hint(engine: sa.Engine) -> None:
    for bad in ("soon", -5, [1]):
        with pytest.raises(UserError) as caught:
            timeout_options(statement=bad)  # type: ignore[arg-type]
        assert caught.value.hint
    with pytest.raises(UserError):
        timeouts_dependency(lock="later")


def test_a_cancel_by_hand_is_not_called_a_timeout(engine: sa.Engine) -> None:
    with (
        engine.connect() as conn,
        timeouts(statement="30s"),
        pytest.raises(sa.exc.OperationalError) as caught,
    ):
        conn.execute(sa.text("SELECT pg_cancel_backend(pg_backend_pid()), pg_sleep(5)"))
    assert "user request" in str(caught.value.orig)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_asyncpg_and_psycopg_async(pg_url: str) -> None:
    for driver in ("asyncpg", "psycopg"):
        engine = create_async_engine(pg_url, driver=driver, pool_size=1, max_overflow=0)
        enable_timeouts(engine)
        try:
            async with engine.connect() as conn:
                with timeouts(statement="50ms"):
                    with pytest.raises(pgwarden.StatementTimeout) as caught:
                        await conn.execute(sa.text("SELECT pg_sleep(3)"))
                    await conn.rollback()
            assert caught.value.timeout_ms == 50, driver
            async with engine.connect() as conn:
                row = (await conn.execute(SHOW)).one()
            assert tuple(row) == ("0", "0"), driver
        finally:
            await engine.dispose()


def test_the_fastapi_dependency_reaches_sync_and_async_endpoints() -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from pgwarden.orm.timeouts import current_timeouts

    app = FastAPI(dependencies=[Depends(timeouts_dependency(statement="1234ms", lock=50))])

    @app.get("/async")
    async def in_task() -> list[int | None]:
        values = current_timeouts()
        return [values.statement_ms, values.lock_ms]

    @app.get("/sync")
    def in_thread() -> list[int | None]:
        values = current_timeouts()
        return [values.statement_ms, values.lock_ms]

    with TestClient(app) as client:
        assert client.get("/async").json() == [1234, 50]
        assert client.get("/sync").json() == [1234, 50]
    assert current_timeouts().statement_ms is None


def test_the_engine_settings_timeout_is_named_too(pg_url: str) -> None:
    from pgwarden.config import load_settings

    settings = load_settings(statement_timeout="150ms")
    engine = create_engine(pg_url, settings=settings, pool_size=1, max_overflow=0)
    enable_timeouts(engine)
    try:
        with engine.connect() as conn:
            assert conn.execute(SHOW).one()[0] == "150ms"
            with pytest.raises(pgwarden.StatementTimeout) as caught:
                conn.execute(sa.text("SELECT pg_sleep(3)"))
            conn.rollback()
            with timeouts(statement="2s"):
                assert conn.execute(SHOW).one()[0] == "2s"
            conn.rollback()
            assert conn.execute(SHOW).one()[0] == "150ms"  # back to the engine's own
        assert caught.value.timeout_ms == 150
    finally:
        engine.dispose()
