"""Helpers of learnhub's tests: the API on its own role, signed in as a chosen user."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from learnhub.api.app import create_app
from learnhub.app_role import app_url
from learnhub.auth import issue_session
from learnhub.db import make_engine, make_sessionmaker
from learnhub.workload import StatementCounter

from pgwarden_test_support import scalar

__all__ = ["SIGN_IN_STATEMENTS", "Client", "first_user", "scalar", "sign_in", "with_client"]

# Statements a signed-in request sends before its route's own: the session lookup,
# then set_tenant and set_actor.
SIGN_IN_STATEMENTS = 3

Client = Callable[..., Awaitable[tuple[httpx.Response, int]]]


def first_user(url: str, org: int) -> int:
    """Return the first active, undeleted user of organisation ``org``."""
    user = scalar(
        url,
        "SELECT min(id) FROM users WHERE org_id = :org AND is_active AND deleted_at IS NULL",
        org=org,
    )
    assert user is not None, f"organisation {org} has no active user"
    return int(user)


async def sign_in(engine: Any, user_id: int) -> str:
    """Start a session for ``user_id`` through ``engine``; return its token."""
    async with make_sessionmaker(engine)() as session:
        token = await issue_session(session, user_id)
        await session.commit()
    return token


def with_client(
    url: str,
    body: Callable[[Client], Awaitable[None]],
    *,
    org: int | None = 1,
    user_id: int | None = None,
) -> None:
    """Run ``body`` with a function that sends one request and counts its statements.

    The app connects as the API's role (``app_url``), as in production. Requests are
    signed in as ``user_id``, else as the first user of ``org``; anonymous if both are
    None. ``send(method, path, json=None, headers=None, anonymous=False)`` returns the
    response and the statements it cost; ``headers`` are sent besides the signed-in
    ones, and ``anonymous`` leaves those out.
    """
    if user_id is None and org is not None:
        user_id = first_user(url, org)

    async def main() -> None:
        engine = make_engine(app_url(url))
        app = create_app(engine)
        counter = StatementCounter(engine)
        transport = httpx.ASGITransport(app=app)
        try:
            signed = {}
            if user_id is not None:
                signed = {"Authorization": f"Bearer {await sign_in(engine, user_id)}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get("/api/content?limit=1")  # first connect initialises the dialect

                async def send(
                    method: str,
                    path: str,
                    json: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None,
                    anonymous: bool = False,
                ) -> tuple[httpx.Response, int]:
                    before = counter.count
                    sent = {**({} if anonymous else signed), **(headers or {})}
                    response = await client.request(method, path, json=json, headers=sent)
                    return response, counter.count - before

                await body(send)
        finally:
            counter.close()
            await engine.dispose()

    asyncio.run(main())
