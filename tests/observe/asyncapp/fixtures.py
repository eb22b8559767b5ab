"""Fixtures of the async app's tests: the database, and a kit made by an async fixture of
each scope, before the test starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from kits import Kit, async_fixture, close_kit, open_kit
from shop import fill
from sqlalchemy.ext.asyncio import AsyncSession

from pgwarden.testing.servers import TestServer


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def db_url(pg_server: TestServer) -> Iterator[str]:
    name = pg_server.create_database()
    url = sa.make_url(pg_server.url(name)).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    fill(engine)
    engine.dispose()
    yield url.render_as_string(hide_password=False)
    pg_server.drop_database(name)


@async_fixture(scope="session")
async def kit_session(db_url: str) -> AsyncIterator[Kit]:
    kit = await open_kit(db_url)
    yield kit
    await close_kit(kit)


@async_fixture(scope="module")
async def kit_module(db_url: str) -> AsyncIterator[Kit]:
    kit = await open_kit(db_url)
    yield kit
    await close_kit(kit)


@async_fixture()
async def kit_function(db_url: str) -> AsyncIterator[Kit]:
    kit = await open_kit(db_url)
    kit.session = AsyncSession(kit.engine)
    yield kit
    await close_kit(kit)
