"""Each way an async test reaches the database, from each place its session comes from:
the N+1 twin must fail under ``--pgwarden-nplusone=raise``, the clean twin must pass."""

from __future__ import annotations

import asyncio

import anyio.to_thread
import pytest
from kits import Kit, close_kit, open_kit, runs
from shop import SHELF_TAGS, shelf_tags, shelf_tags_in_thread, shelf_tags_sync
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.testclient import TestClient

LOADS = ["awaitable_attrs", "run_sync", "asgi_client", "test_client", "executor", "to_thread"]
cases = pytest.mark.parametrize(
    ("load", "eager"),
    [(load, eager) for load in LOADS for eager in (False, True)],
    ids=[f"{load}-{'clean' if eager else 'nplusone'}" for load in LOADS for eager in (0, 1)],
)


async def read_tags(kit: Kit, load: str, eager: bool) -> list[list[str]]:
    if load in ("awaitable_attrs", "run_sync"):
        session = kit.session or AsyncSession(kit.engine)
        try:
            if load == "awaitable_attrs":
                return await shelf_tags(session, eager)
            return await session.run_sync(shelf_tags_sync, eager)
        finally:
            if session is not kit.session:
                await session.close()
    query = {"eager": "true" if eager else "false"}
    if load == "asgi_client":
        response = await kit.client.get("/shelves", params=query)
        return response.json()  # type: ignore[no-any-return]
    if load == "test_client":
        with TestClient(kit.app) as client:
            return client.get("/shelves", params=query).json()  # type: ignore[no-any-return]
    if load == "executor":
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, shelf_tags_in_thread, kit.sync_engine, eager)
    return await anyio.to_thread.run_sync(shelf_tags_in_thread, kit.sync_engine, eager)


@cases
@runs
async def test_function_fixture(kit_function: Kit, load: str, eager: bool) -> None:
    assert await read_tags(kit_function, load, eager) == SHELF_TAGS


@cases
@runs
async def test_module_fixture(kit_module: Kit, load: str, eager: bool) -> None:
    assert await read_tags(kit_module, load, eager) == SHELF_TAGS


@cases
@runs
async def test_session_fixture(kit_session: Kit, load: str, eager: bool) -> None:
    assert await read_tags(kit_session, load, eager) == SHELF_TAGS


@cases
@runs
async def test_made_in_the_test(db_url: str, load: str, eager: bool) -> None:
    kit = await open_kit(db_url)
    try:
        assert await read_tags(kit, load, eager) == SHELF_TAGS
    finally:
        await close_kit(kit)
