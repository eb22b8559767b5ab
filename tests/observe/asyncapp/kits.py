"""What the tests of the async app share: the runner's decorators and the kit (an
engine, a sync engine for threads, the app and an ``httpx.AsyncClient`` over it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from matrix_runner import RUNNER
from shop import create_app
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Session-wide event loops: async fixtures of every scope share the tests' loop.
LOOP = "session"


def async_fixture(**options: Any) -> Callable[[Any], Any]:
    """Declare an async fixture as this runner wants it."""
    if RUNNER == "strict":
        import pytest_asyncio

        return pytest_asyncio.fixture(loop_scope=LOOP, **options)
    return pytest.fixture(**options)


def runs(test: Any) -> Any:
    """Mark an async test as this runner wants it (auto mode wants nothing)."""
    if RUNNER == "anyio":
        return pytest.mark.anyio(test)
    if RUNNER == "strict":
        return pytest.mark.asyncio(loop_scope=LOOP)(test)
    return test


@dataclass
class Kit:
    engine: AsyncEngine
    sync_engine: sa.Engine
    app: FastAPI
    client: httpx.AsyncClient
    session: AsyncSession | None = None


async def open_kit(url: str) -> Kit:
    """Make an engine (each connection made in the loop that uses it), the app, a client."""
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    app = create_app(async_sessionmaker(engine, expire_on_commit=False))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")
    sync_engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    return Kit(engine, sync_engine, app, client)


async def close_kit(kit: Kit) -> None:
    if kit.session is not None:
        await kit.session.close()
    await kit.client.aclose()
    await kit.engine.dispose()
    kit.sync_engine.dispose()
