"""learnhub's REST and GraphQL endpoints, including the deliberate N+1 patterns, which must
really issue 1 + N statements (pgwarden's N+1 detection is tested against them)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from learnhub.app_role import app_url
from learnhub.db import make_engine
from learnhub.workload import CONTENT_WITH_COMMENTS_N_PLUS_ONE, run_workload
from learnhub_support import SIGN_IN_STATEMENTS, Client, first_user, with_client
from learnhub_support import scalar as _scalar

from pgwarden.db.engines import create_engine


def test_content_list_lazy_loads_each_author(seeded_url: str) -> None:
    async def body(send: Client) -> None:
        response, statements = await send("GET", "/api/content?limit=10", None)
        assert response.status_code == 200
        items = response.json()
        assert len(items) == 10
        authors = _scalar(
            seeded_url,
            "SELECT count(DISTINCT author_id) FROM content WHERE id = ANY(:ids)",
            ids=[item["id"] for item in items],
        )
        # DELIBERATE N+1: one SELECT for the list, one per distinct author.
        assert statements == SIGN_IN_STATEMENTS + 1 + authors
        assert authors > 5

    with_client(seeded_url, body)


def test_graphql_comments_are_loaded_per_content(seeded_url: str) -> None:
    async def body(send: Client) -> None:
        query = {"query": CONTENT_WITH_COMMENTS_N_PLUS_ONE, "variables": {"limit": 8}}
        response, statements = await send("POST", "/graphql", query)
        data = response.json()
        assert "errors" not in data, data
        assert len(data["data"]["contents"]) == 8
        # DELIBERATE N+1: the list, its authors (selectinload), then comments per content.
        assert statements == SIGN_IN_STATEMENTS + 2 + 8

    with_client(seeded_url, body)


def test_single_object_reads_use_a_constant_number_of_statements(seeded_url: str) -> None:
    content_id = _scalar(
        seeded_url, "SELECT min(id) FROM content WHERE state = 'published' AND org_id = 1"
    )
    user_id = first_user(seeded_url, 1)

    async def body(send: Client) -> None:
        response, statements = await send("GET", f"/api/content/{content_id}", None)
        assert response.status_code == 200
        assert response.json()["id"] == content_id
        # content, author, category, tags, comments, their authors
        assert statements == SIGN_IN_STATEMENTS + 6
        response, statements = await send("GET", f"/api/users/{user_id}", None)
        assert response.status_code == 200
        assert statements == SIGN_IN_STATEMENTS + 2
        response, _ = await send("GET", "/api/content/999999999", None)
        assert response.status_code == 404

    with_client(seeded_url, body)


def test_slug_lookup_finds_the_content(seeded_url: str) -> None:
    slug = _scalar(seeded_url, "SELECT slug FROM content WHERE org_id = 1 ORDER BY id LIMIT 1")

    async def body(send: Client) -> None:
        response, _ = await send("GET", f"/api/content/by-slug/{slug}", None)
        assert response.status_code == 200 and response.json()["slug"] == slug

    with_client(seeded_url, body)


def test_search_ranks_a_title_match_above_a_body_match(learnhub_url: str) -> None:
    engine = create_engine(learnhub_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO organizations (id, name, slug) VALUES (1, 'o', 'o')"))
        conn.execute(
            sa.text(
                "INSERT INTO users (id, org_id, email, display_name, password_hash)"
                " VALUES (1, 1, 'a@example.org', 'A', 'x')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO content (org_id, author_id, title, slug, body, state) VALUES"
                " (1, 1, 'Cooking basics', 'b', 'Walrus facts hidden in the body', 'published'),"
                " (1, 1, 'Walrus anatomy', 't', 'Nothing else here', 'published'),"
                " (1, 1, 'Gardening', 'g', 'No match at all', 'published')"
            )
        )
    engine.dispose()

    async def body(send: Client) -> None:
        response, _ = await send("GET", "/api/search?q=walrus", None)
        hits = response.json()
        assert [hit["title"] for hit in hits] == ["Walrus anatomy", "Cooking basics"]
        assert hits[0]["rank"] > hits[1]["rank"]
        hostile, _ = await send("GET", "/api/search?q=' OR 1=1; DROP TABLE content; --", None)
        assert hostile.status_code == 200 and hostile.json() == []

    with_client(learnhub_url, body)


def test_soft_deleted_content_is_not_served(seeded_url: str) -> None:
    content_id = _scalar(
        seeded_url, "SELECT min(id) FROM content WHERE deleted_at IS NULL AND org_id = 1"
    )
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE content SET deleted_at = now() WHERE id = :id"), {"id": content_id}
        )
    engine.dispose()

    async def body(send: Client) -> None:
        response, _ = await send("GET", f"/api/content/{content_id}", None)
        assert response.status_code == 404

    before = _scalar(seeded_url, "SELECT deleted_at FROM content WHERE id = :id", id=content_id)
    assert before is not None
    with_client(seeded_url, body)


def test_workload_runs_every_route_without_errors(seeded_url: str) -> None:
    async def main() -> None:
        engine = make_engine(app_url(seeded_url))
        try:
            report = await run_workload(engine, requests=60, seed=3)
        finally:
            await engine.dispose()
        assert report.requests == 60
        assert not report.errors
        assert len(report.by_route) >= 6
        assert report.statements > report.requests

    asyncio.run(main())
