"""N+1 detection on learnhub's async app: each deliberate N+1 is reported with the right
lines and fix, the fix brings the statement count to a constant, and fixed paths, single
objects and empty results report nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import learnhub.api.graphql as graphql_api
import learnhub.api.rest as rest_api
import pytest
from learnhub.api.app import create_app
from learnhub.auth import issue_session
from learnhub.db import make_engine, make_sessionmaker
from learnhub.models import Content
from learnhub.workload import CONTENT_WITH_COMMENTS_N_PLUS_ONE
from sqlalchemy.orm import joinedload, selectinload

from pgwarden import observe
from pgwarden_test_support import line_of, scalar

REST = Path(rest_api.__file__)
GRAPHQL = Path(graphql_api.__file__)
Send = Callable[..., Awaitable[httpx.Response]]


def run_app(
    url: str, body: Callable[[Send], Awaitable[None]], *, user_id: int | None = None
) -> None:
    """Run ``body`` with ``send(method, path, json, signed=False)`` on learnhub at ``url``.

    The app connects as the URL's (owner) role; ``signed`` requests are signed in as
    ``user_id``, the others anonymous.
    """

    async def main() -> None:
        engine = make_engine(url)
        observe.instrument(engine, metrics=False)
        transport = httpx.ASGITransport(app=create_app(engine))
        try:
            headers = {}
            if user_id is not None:
                async with make_sessionmaker(engine)() as session:
                    token = await issue_session(session, user_id)
                    await session.commit()
                headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/api/content?limit=1")  # connect: the dialect's own queries

                async def send(
                    method: str, path: str, json: dict[str, Any] | None, signed: bool = False
                ) -> Any:
                    response = await client.request(
                        method, path, json=json, headers=headers if signed else {}
                    )
                    assert response.status_code == 200, response.text
                    return response

                await body(send)
        finally:
            observe.uninstrument(engine)
            await engine.dispose()

    asyncio.run(main())


def test_the_content_list_n_plus_one_is_reported_with_lines_and_fix(seeded_url: str) -> None:
    async def body(send: Send) -> None:
        with observe.watch(mode="log") as watch:
            await send("GET", "/api/content?limit=10", None)
        [finding] = watch.findings()
        assert finding.kind == "lazy_load"
        assert finding.relationship == "Content.author"
        assert finding.count >= 5
        assert finding.parents_loaded == 10
        assert finding.trigger is not None and finding.parent_query is not None
        assert Path(finding.trigger.filename) == REST
        assert finding.trigger.lineno == line_of(REST, "await item.awaitable_attrs.author")
        assert Path(finding.parent_query.filename) == REST
        assert finding.parent_query.lineno == line_of(REST, "# parent query")
        assert finding.fix == ".options(joinedload(Content.author))"
        assert "rest.py" in finding.message() and "joinedload(Content.author)" in finding.message()

    run_app(seeded_url, body)


def test_the_graphql_comments_n_plus_one_is_reported_with_lines_and_fix(seeded_url: str) -> None:
    async def body(send: Send) -> None:
        query = {"query": CONTENT_WITH_COMMENTS_N_PLUS_ONE, "variables": {"limit": 6}}
        with observe.watch(mode="log") as watch:
            await send("POST", "/graphql", query)
        [finding] = watch.findings()
        assert finding.relationship == "Content.comments"
        assert finding.count == 6
        assert finding.parents_loaded == 6
        assert finding.trigger is not None and finding.parent_query is not None
        assert Path(finding.trigger.filename) == GRAPHQL
        assert finding.trigger.lineno == line_of(
            GRAPHQL, "comments = await self.model.awaitable_attrs.comments"
        )
        assert finding.parent_query.lineno == line_of(
            GRAPHQL, "items = (await info.context.session.scalars(stmt)).all()"
        )
        assert finding.fix == ".options(selectinload(Content.comments))"

    run_app(seeded_url, body)


def test_applying_the_suggested_fixes_makes_the_statement_count_constant(
    seeded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_rest = rest_api.published_content
    original_graphql = graphql_api.contents_query
    monkeypatch.setattr(
        rest_api,
        "published_content",
        lambda limit, offset: original_rest(limit, offset).options(joinedload(Content.author)),
    )
    monkeypatch.setattr(
        graphql_api,
        "contents_query",
        lambda limit, offset: original_graphql(limit, offset).options(
            selectinload(Content.comments)
        ),
    )

    async def body(send: Send) -> None:
        for limit in (3, 10, 25):
            with observe.watch(mode="raise") as watch:
                items = (await send("GET", f"/api/content?limit={limit}", None)).json()
            assert len(items) == limit
            assert watch.statements == 1  # the list and its authors in one statement
            query = {"query": CONTENT_WITH_COMMENTS_N_PLUS_ONE, "variables": {"limit": limit}}
            with observe.watch(mode="raise") as watch:
                data = (await send("POST", "/graphql", query)).json()
            assert len(data["data"]["contents"]) == limit
            assert watch.statements == 3  # contents, their authors, their comments

    run_app(seeded_url, body)


def test_single_objects_empty_results_and_eager_paths_report_nothing(seeded_url: str) -> None:
    user = scalar(seeded_url, "SELECT min(id) FROM users WHERE is_active AND deleted_at IS NULL")

    async def body(send: Send) -> None:
        for path in (
            "/api/content/1",  # one object, eagerly loaded
            "/api/content?limit=10&offset=100000",  # an empty list
            "/api/content?limit=1",  # one object, lazy author: not an N+1
            f"/api/users/{user}",  # users are for signed-in callers
            "/api/content/1/comments",
            "/api/search?q=learn",
        ):
            with observe.watch(mode="raise") as watch:
                await send("GET", path, None, signed=path.startswith("/api/users"))
            assert watch.findings() == [], path

    run_app(seeded_url, body, user_id=user)


def test_raise_mode_fails_the_unit_of_work_with_the_report(seeded_url: str) -> None:
    async def body(send: Send) -> None:
        with pytest.raises(observe.NPlusOneDetected) as info, observe.watch(mode="raise"):
            await send("GET", "/api/content?limit=5", None)
        assert "Content.author" in info.value.message
        assert info.value.hint

    run_app(seeded_url, body)


def test_allow_list_silences_a_known_pattern(seeded_url: str) -> None:
    async def body(send: Send) -> None:
        with observe.watch(mode="raise", allow=["Content.author"]) as watch:
            await send("GET", "/api/content?limit=5", None)
        assert watch.findings() == []
        with observe.watch(mode="raise", allow=["*learnhub/api/rest.py:*"]) as watch:
            await send("GET", "/api/content?limit=5", None)
        assert watch.findings() == []

    run_app(seeded_url, body)
