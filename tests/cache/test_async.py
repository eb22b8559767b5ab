"""The cache under asyncio: AsyncSession and AsyncConnection, commits invalidating."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cache_support import Counter
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from pgwarden.cache import QueryCache, cached


@pytest.mark.asyncio
async def test_async_sessions_and_connections_use_the_cache(
    engine: Engine, redis_url: str, namespace: str
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Counter).values(key=1, value=10))
    async_engine = create_async_engine(engine.url)
    cache = QueryCache(redis_url, namespace=namespace)
    cache.instrument(async_engine)
    sessions = async_sessionmaker(async_engine)
    cache.attach(sessions)
    stmt = sa.select(Counter).where(Counter.key == 1).options(cached())
    try:
        for _ in range(2):
            async with sessions() as session:
                assert (await session.scalars(stmt)).one().value == 10
        assert cache.stats().hits == 1
        async with sessions() as session:
            (await session.get(Counter, 1)).value = 11  # type: ignore[union-attr]
            await session.commit()
        async with sessions() as session:
            assert (await session.scalars(stmt)).one().value == 11
        core = sa.select(Counter.value).where(Counter.key == 1)
        async with async_engine.connect() as conn:
            first = (await cache.execute_async(conn, core)).scalar_one()
            second = (await cache.execute_async(conn, core)).scalar_one()
        assert first == second == 11
        assert cache.stats().hits == 2
    finally:
        await async_engine.dispose()
