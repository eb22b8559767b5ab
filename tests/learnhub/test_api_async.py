"""learnhub's endpoints from async tests, the way FastAPI projects test: an async client
fixture (``httpx.AsyncClient`` over the app) made before each test starts. The deliberate
N+1s really issue 1 + N statements; run with ``--pgwarden-nplusone=raise``, exactly those
two tests fail, with the lines and the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from learnhub.api.app import create_app
from learnhub.app_role import app_url
from learnhub.db import make_engine
from learnhub.workload import CONTENT_WITH_COMMENTS_N_PLUS_ONE, StatementCounter
from learnhub_support import SIGN_IN_STATEMENTS, first_user, sign_in

from pgwarden.db.engines import create_engine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Client:
    """The app's client, and a count of the statements each request sends."""

    http: httpx.AsyncClient
    counter: StatementCounter

    async def send(
        self, method: str, path: str, json: dict[str, Any] | None = None
    ) -> tuple[httpx.Response, int]:
        before = self.counter.count
        response = await self.http.request(method, path, json=json)
        return response, self.counter.count - before


@pytest.fixture
async def client(seeded_url: str) -> AsyncIterator[Client]:
    """The app on the API's own role, signed in as the first user of organisation 1."""
    engine = make_engine(app_url(seeded_url))
    counter = StatementCounter(engine)
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        token = await sign_in(engine, first_user(seeded_url, 1))
        signed = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=signed
        ) as http:
            await http.get("/api/users?limit=1")  # first connect initialises the dialect
            yield Client(http, counter)
    finally:
        counter.close()
        await engine.dispose()


def scalar(url: str, query: str, **params: Any) -> Any:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        value = conn.execute(sa.text(query), params).scalar()
    engine.dispose()
    return value


async def test_content_list_lazy_loads_each_author(client: Client, seeded_url: str) -> None:
    response, statements = await client.send("GET", "/api/content?limit=10")
    assert response.status_code == 200
    items = response.json()
    assert len(items) == 10
    authors = scalar(
        seeded_url,
        "SELECT count(DISTINCT author_id) FROM content WHERE id = ANY(:ids)",
        ids=[item["id"] for item in items],
    )
    # DELIBERATE N+1: one SELECT for the list, one per distinct author.
    assert statements == SIGN_IN_STATEMENTS + 1 + authors
    assert authors > 5


async def test_graphql_comments_are_loaded_per_content(client: Client) -> None:
    query = {"query": CONTENT_WITH_COMMENTS_N_PLUS_ONE, "variables": {"limit": 8}}
    response, statements = await client.send("POST", "/graphql", query)
    data = response.json()
    assert "errors" not in data, data
    assert len(data["data"]["contents"]) == 8
    # DELIBERATE N+1: the list, its authors (selectinload), then comments per content.
    assert statements == SIGN_IN_STATEMENTS + 2 + 8


async def test_single_object_reads_use_a_constant_number_of_statements(
    client: Client, seeded_url: str
) -> None:
    content_id = scalar(
        seeded_url, "SELECT min(id) FROM content WHERE state = 'published' AND org_id = 1"
    )
    user_id = first_user(seeded_url, 1)
    response, statements = await client.send("GET", f"/api/content/{content_id}")
    assert response.status_code == 200
    assert response.json()["id"] == content_id
    # content, author, category, tags, comments, their authors
    assert statements == SIGN_IN_STATEMENTS + 6
    response, statements = await client.send("GET", f"/api/users/{user_id}")
    assert response.status_code == 200
    assert statements == SIGN_IN_STATEMENTS + 2
    response, _ = await client.send("GET", "/api/content/999999999")
    assert response.status_code == 404


async def test_slug_lookup_finds_the_content(client: Client, seeded_url: str) -> None:
    slug = scalar(seeded_url, "SELECT slug FROM content WHERE org_id = 1 ORDER BY id LIMIT 1")
    response, _ = await client.send("GET", f"/api/content/by-slug/{slug}")
    assert response.status_code == 200 and response.json()["slug"] == slug


async def test_soft_deleted_content_is_not_served(client: Client, seeded_url: str) -> None:
    content_id = scalar(
        seeded_url,
        "UPDATE content SET deleted_at = now()"
        " WHERE id = (SELECT min(id) FROM content WHERE deleted_at IS NULL AND org_id = 1)"
        " RETURNING id",
    )
    response, _ = await client.send("GET", f"/api/content/{content_id}")
    assert response.status_code == 404
