"""N+1s in async fixtures are reported with the test, marked with the fixture; a watch
opened in an async test sees its block and reports to the test's; allow-lists hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kits import Kit, async_fixture, runs
from shop import SHELF_TAGS, shelf_tags
from sqlalchemy.ext.asyncio import AsyncSession

from pgwarden import observe


@async_fixture()
async def warmed(kit_function: Kit) -> AsyncIterator[Kit]:
    assert kit_function.session is not None
    await shelf_tags(kit_function.session, False)
    yield kit_function


@async_fixture()
async def cooled(kit_function: Kit) -> AsyncIterator[Kit]:
    yield kit_function
    async with AsyncSession(kit_function.engine) as session:
        await shelf_tags(session, False)


@async_fixture(scope="module")
async def warmed_once(kit_module: Kit) -> AsyncIterator[Kit]:
    async with AsyncSession(kit_module.engine) as session:
        await shelf_tags(session, False)
    yield kit_module


async def read_eagerly(kit: Kit) -> None:
    async with AsyncSession(kit.engine) as session:
        assert await shelf_tags(session, True) == SHELF_TAGS


@runs
async def test_warmed(warmed: Kit) -> None:
    await read_eagerly(warmed)


@runs
async def test_cooled(cooled: Kit) -> None:
    await read_eagerly(cooled)


@runs
async def test_warmed_once_first(warmed_once: Kit) -> None:
    await read_eagerly(warmed_once)


@runs
async def test_warmed_once_second(warmed_once: Kit) -> None:
    await read_eagerly(warmed_once)


@runs
async def test_nested_watch(kit_function: Kit) -> None:
    assert kit_function.session is not None
    with observe.watch("block", mode="log") as block:
        await shelf_tags(kit_function.session, False)
    assert [finding.relationship for finding in block.findings()] == ["Shelf.tags"]


@pytest.mark.nplusone_allow("Shelf.tags")
@runs
async def test_allowed(kit_function: Kit) -> None:
    assert kit_function.session is not None
    assert await shelf_tags(kit_function.session, False) == SHELF_TAGS
