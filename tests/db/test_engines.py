from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.config import load_settings
from pgwarden.db.engines import connect, create_async_engine, create_engine
from pgwarden.errors import ConfigError, ConnectionFailed

SESSION_SQL = sa.text(
    "SELECT current_setting('application_name'), current_setting('jit'),"
    " current_setting('statement_timeout')"
)


def test_sync_engine_sets_pool_and_session(pg_url: str) -> None:
    settings = load_settings(statement_timeout_ms="1500ms", db_pool_size=3, db_max_overflow=4)
    engine = create_engine(pg_url, settings=settings, application_name="shop-api")
    try:
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 4  # type: ignore[attr-defined]
        assert engine.pool._pre_ping is True
        with engine.connect() as conn:
            assert conn.execute(SESSION_SQL).one() == ("shop-api", "off", "1500ms")
    finally:
        engine.dispose()


def test_statement_timeout_cancels_a_long_statement(pg_url: str) -> None:
    settings = load_settings(statement_timeout_ms=100)
    engine = create_engine(pg_url, settings=settings, poolclass=NullPool)
    with (
        engine.connect() as conn,
        pytest.raises(sa.exc.OperationalError, match="statement timeout"),
    ):
        conn.execute(sa.text("SELECT pg_sleep(5)"))
    engine.dispose()


def test_defaults_come_from_settings(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DB_POOL_SIZE", "2")
    engine = create_engine()
    try:
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
        with engine.connect() as conn:
            name, jit, timeout = conn.execute(SESSION_SQL).one()
        assert (name, jit, timeout) == ("pgwarden", "off", "0")
    finally:
        engine.dispose()


def test_no_url_anywhere_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no database URL") as info:
        create_engine()
    assert info.value.hint is not None and "DATABASE_URL" in info.value.hint


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_async_engine_on_each_driver(pg_url: str, driver: str) -> None:
    settings = load_settings(statement_timeout_ms="2s")

    async def run() -> tuple[str, str, str]:
        engine = create_async_engine(
            pg_url, settings=settings, driver=driver, application_name="learnhub"
        )
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(SESSION_SQL)).one()
                return (row[0], row[1], row[2])
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == ("learnhub", "off", "2s")


def test_async_engine_follows_an_asyncpg_url(pg_url: str) -> None:
    url = pg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    assert engine.url.drivername == "postgresql+asyncpg"
    asyncio.run(engine.dispose())


def test_refused_connection_names_the_cause_not_the_password() -> None:
    engine = create_engine("postgresql://app:hunter2@127.0.0.1:1/app", poolclass=NullPool)
    with pytest.raises(ConnectionFailed) as info, connect(engine):
        pass
    text = f"{info.value.message} {info.value.hint}"
    assert "nothing accepts connections" in text
    assert "postgresql://app:***@127.0.0.1:1/app" in text
    assert "hunter2" not in text


def test_a_missing_database_is_named(pg_url: str) -> None:
    url = sa.make_url(pg_url).set(database="no_such_db_here")
    engine = create_engine(url, poolclass=NullPool)
    with pytest.raises(ConnectionFailed, match="does not exist"), connect(engine):
        pass


def test_a_failed_statement_does_not_quote_its_values(pg_url: str) -> None:
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as conn, pytest.raises(sa.exc.DataError) as info:
        conn.execute(sa.text("SELECT CAST(:secret AS int)"), {"secret": "hunter2-not-a-number"})
    engine.dispose()
    assert "hunter2" not in str(info.value).split("\n[SQL")[1]
