"""Drive learnhub in-process with a realistic mix of requests, and count what it cost.

Requests go through httpx's ASGI transport straight into the app (no server, no
network). The mix deliberately exercises both N+1 patterns and the unindexed slug lookup.
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
from learnhub.db import make_engine
from pgwarden import observe
from pgwarden.observe import NPlusOneFinding

CONTENT_WITH_COMMENTS = """
query Contents($limit: Int!) {
  contents(limit: $limit) { id title author { displayName } comments { id body } }
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


async def _ids(engine: AsyncEngine) -> tuple[list[int], list[str], list[int]]:
    async with engine.connect() as conn:
        content = (
            await conn.execute(
                sa.text(
                    "SELECT id, slug FROM content WHERE state = 'published' ORDER BY id LIMIT 500"
                )
            )
        ).all()
        users = (
            (await conn.execute(sa.text("SELECT id FROM users ORDER BY id LIMIT 500")))
            .scalars()
            .all()
        )
    return [row.id for row in content], [row.slug for row in content], list(users)


async def run_workload(
    engine: AsyncEngine,
    *,
    requests: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> WorkloadReport:
    """Send ``requests`` requests to learnhub on ``engine``, one after another."""
    rng = random.Random(seed)
    content_ids, slugs, user_ids = await _ids(engine)
    if not content_ids or not user_ids:
        raise RuntimeError("the database has no published content or users: seed it first")
    routes: list[tuple[str, int, Callable[[], tuple[str, str, dict[str, Any] | None]]]] = [
        # (name, weight, make request) ; the N+1 list and the slug lookup come often.
        (
            "GET /api/content",
            20,
            lambda: ("GET", f"/api/content?limit=20&offset={rng.randint(0, 5) * 20}", None),
        ),
        (
            "GET /api/content/by-slug",
            20,
            lambda: ("GET", f"/api/content/by-slug/{rng.choice(slugs)}", None),
        ),
        (
            "GET /api/content/{id}",
            15,
            lambda: ("GET", f"/api/content/{rng.choice(content_ids)}", None),
        ),
        (
            "GET /api/content/{id}/comments",
            10,
            lambda: ("GET", f"/api/content/{rng.choice(content_ids)}/comments", None),
        ),
        ("GET /api/users/{id}", 10, lambda: ("GET", f"/api/users/{rng.choice(user_ids)}", None)),
        ("GET /api/users", 5, lambda: ("GET", "/api/users?limit=20", None)),
        ("GET /api/search", 10, lambda: ("GET", f"/api/search?q={rng.choice(SEARCH_WORDS)}", None)),
        (
            "POST /graphql contents",
            10,
            lambda: (
                "POST",
                "/graphql",
                {"query": CONTENT_WITH_COMMENTS, "variables": {"limit": 10}},
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
                method, path, body = makers[name]()
                before = counter.count
                response = await client.request(method, path, json=body)
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
    """Run the workload on a new engine for ``url`` (default: DATABASE_URL)."""

    async def main() -> WorkloadReport:
        engine = make_engine(url)
        try:
            return await run_workload(engine, requests=requests, seed=seed)
        finally:
            await engine.dispose()

    return asyncio.run(main())
