"""learnhub's content query through its real strawberry schema on a real database: with
pgwarden's loaders, comments, their authors and tags (many-to-many) cost the same number
of statements at every page size, under an N+1 watch in raise mode, and the answer
equals what plain SQL says (soft-deleted comments left out)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import sqlalchemy as sa
from learnhub.api.app import create_app
from learnhub.app_role import app_url
from learnhub.db import make_engine
from learnhub.workload import CONTENT_WITH_COMMENTS
from learnhub_support import SIGN_IN_STATEMENTS, first_user, sign_in

from pgwarden import observe

# contents with their authors (2), comments, comment authors, tags.
LEVELS = 5
# The first two comments of each content, ranked by a window function in one statement.
FIRST_COMMENTS = """
query Contents($limit: Int!) { contents(limit: $limit) { id comments(limit: 2) { id } } }
"""

# Three copies of the seeded content, published and public, each with its own comments
# (some soft-deleted) and tags: enough for a page of 200.
GROW = [
    """
    INSERT INTO content (org_id, author_id, title, slug, state, published_at, visibility)
    SELECT org_id, author_id, title || ' #' || g, slug || '-' || g, 'published',
           now() - (id * 3 + g) * interval '1 minute', 'public'
    FROM content, generate_series(1, 3) AS g
    """,
    """
    INSERT INTO comments (content_id, author_id, body, deleted_at)
    SELECT c.id, u.id, 'comment ' || n || ' on ' || c.id,
           CASE WHEN n = 2 THEN now() END
    FROM content AS c
    CROSS JOIN generate_series(1, (SELECT 1 + c.id % 4)) AS n
    JOIN LATERAL (
        SELECT id FROM users WHERE org_id = c.org_id ORDER BY id OFFSET n LIMIT 1
    ) AS u ON true
    WHERE c.title LIKE '% #%'
    """,
    """
    INSERT INTO content_tags (content_id, tag_id)
    SELECT c.id, t.id FROM content AS c JOIN tags AS t ON (c.id + t.id) % 5 = 0
    WHERE c.title LIKE '% #%'
    """,
]


def _expected(url: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return each content's comments, tags and ratings as plain SQL sees them."""
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            rows = {
                name: conn.execute(sa.text(query), {"ids": ids}).all()
                for name, query in {
                    "comments": "SELECT content_id, id FROM comments WHERE content_id = "
                    "ANY(:ids) AND deleted_at IS NULL ORDER BY content_id, id",
                    "tags": "SELECT ct.content_id, t.name FROM content_tags ct JOIN tags t "
                    "ON t.id = ct.tag_id WHERE ct.content_id = ANY(:ids) ORDER BY 1, t.name",
                }.items()
            }
    finally:
        engine.dispose()
    result: dict[int, dict[str, Any]] = {i: {"comments": [], "tags": []} for i in ids}
    for name, found in rows.items():
        for content_id, value in found:
            result[content_id][name].append(value)
    return result


def test_the_content_query_costs_the_same_statements_at_every_page_size(seeded_url: str) -> None:
    owner = sa.create_engine(sa.make_url(seeded_url).set(drivername="postgresql+psycopg"))
    with owner.begin() as conn:
        for statement in GROW:
            conn.execute(sa.text(statement))
    owner.dispose()
    user_id = first_user(seeded_url, 1)

    async def main() -> dict[int, list[dict[str, Any]]]:
        engine = make_engine(app_url(seeded_url))
        observe.instrument(engine, metrics=False)
        pages: dict[int, list[dict[str, Any]]] = {}
        try:
            token = await sign_in(engine, user_id)
            transport = httpx.ASGITransport(app=create_app(engine))
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", headers=headers
            ) as client:
                await client.get("/api/content?limit=1")  # connect: the dialect's own queries
                for size in (10, 50, 200):
                    query = {"query": CONTENT_WITH_COMMENTS, "variables": {"limit": size}}
                    with observe.watch(mode="raise", threshold=2) as watch:
                        response = await client.post("/graphql", json=query)
                    data = response.json()
                    assert "errors" not in data, data
                    pages[size] = data["data"]["contents"]
                    assert len(pages[size]) == size
                    assert watch.statements == SIGN_IN_STATEMENTS + LEVELS, size
                    query = {"query": FIRST_COMMENTS, "variables": {"limit": size}}
                    with observe.watch(mode="raise", threshold=2) as watch:
                        response = await client.post("/graphql", json=query)
                    first = response.json()["data"]["contents"]
                    assert watch.statements == SIGN_IN_STATEMENTS + 3, size
                    assert {item["id"]: [c["id"] for c in item["comments"]] for item in first} == {
                        item["id"]: [c["id"] for c in item["comments"][:2]] for item in pages[size]
                    }
        finally:
            observe.uninstrument(engine)
            await engine.dispose()
        return pages

    pages = asyncio.run(main())
    page = pages[200]
    expected = _expected(seeded_url, [item["id"] for item in page])
    for item in page:
        want = expected[item["id"]]
        assert [c["id"] for c in item["comments"]] == want["comments"]
        assert [t["name"] for t in item["tags"]] == want["tags"]
    # The page had something to load at every level.
    assert sum(len(item["comments"]) for item in page) > 200
    assert sum(len(item["tags"]) for item in page) > 100
    assert all(c["author"] for item in page for c in item["comments"])
