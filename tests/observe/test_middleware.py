"""The ASGI middleware, on a tiny inline app over learnhub's models."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from learnhub.db import make_engine, make_sessionmaker
from learnhub.models import Content
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pgwarden import observe
from pgwarden.observe.middleware import ObserveMiddleware


def _get(url: str, path: str, **options: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        engine = make_engine(url)
        observe.instrument(engine, metrics=False)
        sessions = make_sessionmaker(engine)
        app = FastAPI()

        @app.get("/titles")
        async def titles(limit: int = 5, eager: bool = False) -> list[str]:
            query = select(Content).order_by(Content.id).limit(limit)
            if eager:
                query = query.options(selectinload(Content.author))
            async with sessions() as session:
                items = (await session.scalars(query)).all()
                return [f"{c.title} by {(await c.awaitable_attrs.author).id}" for c in items]

        wrapped = ObserveMiddleware(app, **options)
        try:
            transport = httpx.ASGITransport(app=wrapped)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/titles?limit=1")  # connect: the dialect's own queries
                return await client.get(path)
        finally:
            observe.uninstrument(engine)
            await engine.dispose()

    return asyncio.run(main())


def _timing(response: httpx.Response) -> tuple[float, int]:
    match = re.fullmatch(
        r'db;dur=([\d.]+);desc="(\d+) statements"', response.headers["server-timing"]
    )
    assert match is not None, response.headers["server-timing"]
    return float(match[1]), int(match[2])


def test_server_timing_counts_the_requests_statements(seeded_url: str) -> None:
    response = _get(seeded_url, "/titles?limit=4&eager=true", mode="raise", server_timing=True)
    assert response.status_code == 200 and len(response.json()) == 4
    duration, statements = _timing(response)
    assert duration > 0
    assert statements == 2  # the list and its authors


def test_each_request_is_watched(seeded_url: str) -> None:
    with pytest.warns(observe.NPlusOneWarning, match=r"Content\.author lazy-loaded"):
        response = _get(seeded_url, "/titles?limit=5", mode="warn", server_timing=True)
    assert response.status_code == 200
    assert _timing(response)[1] >= 3


def test_server_timing_is_off_unless_asked_for(seeded_url: str) -> None:
    # The header tells any client how much database work a request costs.
    response = _get(seeded_url, "/titles?limit=1")
    assert response.status_code == 200
    assert "server-timing" not in response.headers
    response = _get(seeded_url, "/titles?limit=1", server_timing=False)
    assert "server-timing" not in response.headers
