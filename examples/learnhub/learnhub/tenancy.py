"""Show row-level security at work through the API: who served it, and who sees what.

The demo's last step. Through the API, in-process, as the API's role: the same list
request signed in as users of two organisations, and anonymously, returns different
rows; a user asking for another organisation's content, even with a forged
``X-Org-Id`` header, gets a 404, and so does an edit of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from learnhub.api.app import create_app
from learnhub.workload import sign_in
from pgwarden.insight import RoleAccess, role_access

__all__ = ["Probe", "Tenancy", "show_tenancy"]

LIST = "/api/content?limit=10"


@dataclass(frozen=True)
class Probe:
    """One organisation's user asking for another's content, and what came back."""

    asker_org: int
    owner_org: int
    content_id: int
    read_status: int
    edit_status: int


@dataclass(frozen=True)
class Tenancy:
    """What the API's role is, and what the same requests gave to different callers."""

    role: RoleAccess
    # caller ("organization 1 (user 17)", "anonymous") -> the (id, visibility) listed
    lists: dict[str, list[tuple[int, str]]]
    probe: Probe | None  # None when no organisation has content of its own to probe


async def show_tenancy(engine: AsyncEngine) -> Tenancy:
    """Send the demonstration's requests to learnhub on ``engine``; return what they gave."""
    async with engine.connect() as conn:
        role = await conn.run_sync(role_access)
    callers = (await sign_in(engine, organizations=2))[:2]
    app = create_app(engine)
    lists: dict[str, list[tuple[int, str]]] = {}
    probe = None
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://learnhub"
    ) as client:
        for caller in callers:
            listed = (await client.get(LIST, headers=caller.headers)).json()
            lists[f"organization {caller.org_id} (user {caller.user_id})"] = [
                (item["id"], item["visibility"]) for item in listed
            ]
        anonymous = (await client.get(LIST)).json()
        lists["anonymous"] = [(item["id"], item["visibility"]) for item in anonymous]
        if len(callers) == 2:
            asker, owner = callers
            own = (await client.get("/api/content?limit=100", headers=owner.headers)).json()
            private = [item["id"] for item in own if item["visibility"] == "organization"]
            if private:
                forged = {**asker.headers, "X-Org-Id": str(owner.org_id)}
                read = await client.get(f"/api/content/{private[0]}", headers=forged)
                edit = await client.patch(
                    f"/api/content/{private[0]}", headers=forged, json={"title": "taken over"}
                )
                probe = Probe(
                    asker.org_id, owner.org_id, private[0], read.status_code, edit.status_code
                )
    return Tenancy(role=role, lists=lists, probe=probe)
