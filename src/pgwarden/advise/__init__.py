"""Recommend indexes for a workload: ``advise_indexes(conn)``.

The queries come from ``pg_stat_statements`` or are given; pglast parses them into the
columns and expressions they compare, join and sort on; candidate indexes (B-tree,
partial, expression, GIN, GiST, BRIN; on partitioned tables too) are tried on the
planner, with hypopg's hypothetical indexes when the server has it, otherwise on a
scratch copy of the tables; the indexes that make some query several times cheaper are
recommended, with ``CREATE INDEX CONCURRENTLY`` and an Alembic migration::

    from pgwarden.advise import advise_indexes, alembic_migration

    with engine.connect() as conn:
        advice = advise_indexes(conn)
    print(advice.method)  # "hypopg" or "scratch copy"
    for index in advice.recommendations:
        print(index.create_sql)
    print(alembic_migration(advice.recommendations, down_revision=advice.alembic_revision))
"""

from __future__ import annotations

from pgwarden.advise.candidates import Candidate, IndexKey
from pgwarden.advise.errors import PlanFailed, UnusableQuery
from pgwarden.advise.indexes import advise_indexes
from pgwarden.advise.queries import Query, SkippedQuery, read_queries, split_queries, top_queries
from pgwarden.advise.report import (
    IndexAdvice,
    IndexRecommendation,
    PartitionIndex,
    ServedQuery,
    alembic_migration,
)
from pgwarden.advise.scratch import SampledTable

__all__ = [
    "Candidate",
    "IndexAdvice",
    "IndexKey",
    "IndexRecommendation",
    "PartitionIndex",
    "PlanFailed",
    "Query",
    "SampledTable",
    "ServedQuery",
    "SkippedQuery",
    "UnusableQuery",
    "advise_indexes",
    "alembic_migration",
    "read_queries",
    "split_queries",
    "top_queries",
]
