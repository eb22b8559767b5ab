"""Drive learnhub in-process with a realistic mix of requests, and count what it cost.

Requests go through httpx's ASGI transport straight into the app (no server, no
network), signed in as a user of each organisation with a session token, as a browser
would send them. The mix deliberately exercises both N+1 patterns and the unindexed slug
lookup.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from learnhub.api.app import create_app
from learnhub.app_role import app_database_url
from learnhub.auth import issue_session
from learnhub.db import make_engine, make_sessionmaker
from learnhub.models import Content, User, WorkflowState
from pgwarden import observe
from pgwarden.observe import NPlusOneFinding
from pgwarden.orm import set_tenant

# Content with its comments and their authors and its tags, each level loaded by one statement.
CONTENT_WITH_COMMENTS = """
query Contents($limit: Int!) {
  contents(limit: $limit) {
    id title author { displayName }
    comments { id body author { displayName } }
    tags { name }
  }
}
"""

# The same list with its comments loaded one content at a time: the deliberate N+1 the
# workload sends, for pgwarden's N+1 detection to find.
CONTENT_WITH_COMMENTS_N_PLUS_ONE = """
query Contents($limit: Int!) {
  contents(limit: $limit) { id title author { displayName } commentsOneByOne { id body } }
}
"""

SEARCH_WORDS = ["python", "data", "history", "design", "learn", "system", "music", "model"]


@dataclass
class WorkloadReport:
    """What a workload run sent and what the database saw."""

    requests: int = 0
    statements: int = 0
    seconds: float = 0.0
    by_route: Counter[str] = field(default_factory=Counter)
    statements_by_route: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # N+1 patterns pgwarden's middleware found, by their one-line report, with a count of
    # the requests that showed each.
    nplusone: Counter[str] = field(default_factory=Counter)


class StatementCounter:
    """Count statements sent on an engine (cursor executions, as the server sees them)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self._engine = engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


@dataclass(frozen=True)
class Caller:
    """A signed-in user the workload sends requests as, and what that user can see."""

    user_id: int
    org_id: int
    token: str
    content_ids: list[int]  # published content it sees: its organisation's and public
    own_ids: list[int]  # of those, its organisation's: what it may edit
    slugs: list[str]
    colleagues: list[int]  # users of its organisation

    @property
    def headers(self) -> dict[str, str]:
        """Return the headers that sign a request in as this user."""
        return {"Authorization": f"Bearer {self.token}"}


async def sign_in(engine: AsyncEngine, *, organizations: int = 5) -> list[Caller]:
    """Start a session for one user of each of ``organizations`` organisations.

    Through ``engine``, as the API's role would at sign-in: a new session row holding
    the token's hash (:func:`learnhub.auth.issue_session`). The content each one sees is
    read under its organisation, as row-level security shows it.
    """
    sessions = make_sessionmaker(engine)
    callers = []
    async with sessions() as session:
        firsts = (
            await session.execute(
                sa.select(sa.func.min(User.id), User.org_id)
                .where(User.deleted_at.is_(None), User.is_active)
                .group_by(User.org_id)
                .order_by(User.org_id)
                .limit(organizations)
            )
        ).all()
        tokens = {org: await issue_session(session, user) for user, org in firsts}
        await session.commit()
    for user_id, org_id in firsts:
        async with sessions() as session, session.begin():
            await session.run_sync(set_tenant, org_id)
            content = (
                await session.execute(
                    sa.select(Content.id, Content.slug, Content.org_id)
                    .where(Content.state == WorkflowState.PUBLISHED, Content.deleted_at.is_(None))
                    .order_by(Content.id)
                    .limit(500)
                )
            ).all()
            colleagues = await session.scalars(
                sa.select(User.id).where(User.org_id == org_id).order_by(User.id).limit(200)
            )
            callers.append(
                Caller(
                    user_id=user_id,
                    org_id=org_id,
                    token=tokens[org_id],
                    content_ids=[row.id for row in content],
                    own_ids=[row.id for row in content if row.org_id == org_id],
                    slugs=[row.slug for row in content],
                    colleagues=list(colleagues),
                )
            )
    return callers


async def run_workload(
    engine: AsyncEngine,
    *,
    requests: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> WorkloadReport:
    """Send ``requests`` requests to learnhub on ``engine``, one after another.

    Most are signed in as a user of one of the organisations, a few anonymous; the
    engine should connect as the API's role (``learnhub.app_role``), as in production.
    """
    rng = random.Random(seed)
    callers = [c for c in await sign_in(engine) if c.own_ids and c.colleagues]
    if not callers:
        raise RuntimeError("the database has no published content or users: seed it first")
    caller = callers[0]
    Make = Callable[[], tuple[str, str, dict[str, Any] | None]]
    routes: list[tuple[str, int, Make]] = [
        # (name, weight, make request) ; the N+1 list and the slug lookup come often.
        (
            "GET /api/content",
            20,
            lambda: ("GET", f"/api/content?limit=20&offset={rng.randint(0, 5) * 20}", None),
        ),
        ("GET /api/content (anonymous)", 5, lambda: ("GET", "/api/content?limit=20", None)),
        (
            "GET /api/content/by-slug",
            20,
            lambda: ("GET", f"/api/content/by-slug/{rng.choice(caller.slugs)}", None),
        ),
        (
            "GET /api/content/{id}",
            15,
            lambda: ("GET", f"/api/content/{rng.choice(caller.content_ids)}", None),
        ),
        (
            "GET /api/content/{id}/comments",
            10,
            lambda: ("GET", f"/api/content/{rng.choice(caller.content_ids)}/comments", None),
        ),
        (
            "PATCH /api/content/{id}",
            3,
            lambda: (
                "PATCH",
                f"/api/content/{rng.choice(caller.own_ids)}",
                {"summary": "Reviewed by the workload."},
            ),
        ),
        (
            "GET /api/users/{id}",
            10,
            lambda: ("GET", f"/api/users/{rng.choice(caller.colleagues)}", None),
        ),
        ("GET /api/users", 5, lambda: ("GET", "/api/users?limit=20", None)),
        ("GET /api/search", 10, lambda: ("GET", f"/api/search?q={rng.choice(SEARCH_WORDS)}", None)),
        (
            "POST /graphql contents",
            10,
            lambda: (
                "POST",
                "/graphql",
                {"query": CONTENT_WITH_COMMENTS_N_PLUS_ONE, "variables": {"limit": 10}},
            ),
        ),
    ]
    names = [route[0] for route in routes]
    weights = [route[1] for route in routes]
    makers = {route[0]: route[2] for route in routes}
    report = WorkloadReport()
    counter = StatementCounter(engine)
    app = create_app(engine)

    def collect(findings: list[NPlusOneFinding]) -> None:
        for finding in findings:
            report.nplusone[_pattern(finding)] += 1

    observe.on_findings(collect)
    started = time.perf_counter()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://learnhub") as client:
            for done in range(1, requests + 1):
                name = rng.choices(names, weights)[0]
                caller = rng.choice(callers)  # the routes' lambdas read it when called
                method, path, body = makers[name]()
                headers = {} if "anonymous" in name else caller.headers
                before = counter.count
                response = await client.request(method, path, json=body, headers=headers)
                report.requests += 1
                report.by_route[name] += 1
                report.statements_by_route[name] += counter.count - before
                if response.status_code >= 400 or (body and "errors" in response.json()):
                    report.errors[f"{name} -> {response.status_code}"] += 1
                if progress is not None:
                    progress(done, requests)
    finally:
        counter.close()
        observe.remove_findings_hook(collect)
    report.statements = sum(report.statements_by_route.values())
    report.seconds = time.perf_counter() - started
    return report


def _pattern(finding: NPlusOneFinding) -> str:
    """Return a finding's report without its count, which varies from request to request."""
    if finding.kind == "lazy_load":
        return (
            f"{finding.relationship} lazy-loaded per row at "
            f"{finding.trigger.location if finding.trigger else '?'} for rows loaded at "
            f"{finding.parent_query.location if finding.parent_query else '?'}: "
            f"add {finding.fix}"
        )
    return finding.message().split(" ran ", 1)[0]


def run(url: str | None = None, *, requests: int = 200, seed: int = 0) -> WorkloadReport:
    """Run the workload on a new engine for ``url`` (default: the API's, as its role)."""

    async def main() -> WorkloadReport:
        engine = make_engine(url or app_database_url())
        try:
            return await run_workload(engine, requests=requests, seed=seed)
        finally:
            await engine.dispose()

    return asyncio.run(main())
