"""The advisor on learnhub after its workload: the deliberately unindexed slug lookup
gets its index, and the queries the existing indexes serve get nothing.

learnhub's seed at test scale holds 150 pieces of content, few enough that a scan is
as cheap as any index; the tests add 20,000 rows to content (and ANALYZE it) first.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from advise_support import grow_learnhub_content, run_learnhub_workload, scratch_databases
from pgwarden.advise import IndexAdvice, advise_indexes
from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import TestServer

SLUG = ("content", ["slug"], None)


def advise(url: str, **options: object) -> IndexAdvice:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return advise_indexes(conn, **options)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def check(advice: IndexAdvice) -> None:
    assert [(r.table, r.columns, r.predicate) for r in advice.recommendations] == [SLUG]
    (index,) = advice.recommendations
    assert index.create_sql == "CREATE INDEX CONCURRENTLY ix_content_slug ON public.content (slug);"
    assert index.queries and all("content.slug = $1" in q.sql for q in index.queries)
    assert all(q.factor >= 5 for q in index.queries)
    # the workload's other queries were looked at and left alone
    assert advice.queries_analyzed > 5


def test_the_workload_recorded_by_the_app_gets_the_slug_index(seeded_url: str, method: str) -> None:
    grow_learnhub_content(seeded_url)
    statements = run_learnhub_workload(seeded_url, requests=60)
    advice = advise(seeded_url, queries=statements, method=method)
    assert advice.method == ("hypopg" if method == "hypopg" else "scratch copy")
    check(advice)


def test_the_workload_in_pg_stat_statements_gets_the_slug_index(
    seeded_url: str, pg_server: TestServer
) -> None:
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        preloaded = conn.execute(sa.text("SHOW shared_preload_libraries")).scalar_one()
        if "pg_stat_statements" not in preloaded:
            pytest.skip("this server does not preload pg_stat_statements (the embedded one does)")
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    engine.dispose()
    grow_learnhub_content(seeded_url)
    run_learnhub_workload(seeded_url, requests=100)
    advice = advise(seeded_url, min_calls=5)
    assert advice.method is not None
    check(advice)
    assert all(index.queries[0].calls for index in advice.recommendations)
    assert scratch_databases(pg_server.admin) == []
