"""Recommend the B-tree indexes that would make a workload's queries much cheaper.

:func:`advise_indexes` reads the queries (``pg_stat_statements``, or the ones given),
finds candidate indexes in what they filter, join and sort on, asks the planner what
each query would cost with each candidate (with hypopg, or on a scratch copy), and
keeps the few indexes that cut some query's cost by at least ``min_factor``::

    with engine.connect() as conn:
        advice = advise_indexes(conn)
        for index in advice.recommendations:
            print(index.create_sql)
            for query in index.queries:
                print(f"  {query.cost_before:.0f} -> {query.cost_after:.0f}", query.sql)

Choosing among candidates: a query's best candidates are those within 10% of the
cheapest plan any candidate gives it; then, greedily, the candidate that is among the
best for the most queries not yet served wins, ties going to fewer columns, then the
smaller index, then the bigger saving. So one two-column index that serves three
queries beats three single-column ones, and a one-column index beats a two-column
one that is no better. A table that is written more than read (inserted, updated
and deleted rows against scans, in ``pg_stat_user_tables``) must gain
``write_heavy_factor`` instead, since every write also maintains the index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified
from pgwarden.advise.candidates import Candidate, candidates_for, covering_index, resolve
from pgwarden.advise.catalog import QueriedTable, QueryCatalog, load_catalog
from pgwarden.advise.evaluate import Method, PlanFailed, Planner, open_planner
from pgwarden.advise.parsing import ParsedQuery, UnusableQuery, parse_query
from pgwarden.advise.queries import Query, SkippedQuery, top_queries
from pgwarden.advise.report import (
    IndexAdvice,
    IndexRecommendation,
    ServedQuery,
    estimate_size,
    index_name,
    truncated_name,
)
from pgwarden.errors import PgwardenError
from pgwarden.urls import redact_text

__all__ = ["advise_indexes"]

Progress = Callable[[str, int, int], None]

# Plans within this fraction of the cheapest are "as good": the planner's costs are
# estimates, and a shorter or shared index is worth a few percent.
_TOLERANCE = 0.10


@dataclass
class _Work:
    """A query with something to index, and the tables whose indexes it could use."""

    parsed: ParsedQuery
    tables: set[int]


def advise_indexes(
    conn: Connection,
    *,
    queries: Iterable[str | Query] | None = None,
    limit: int = 100,
    min_calls: int = 10,
    min_factor: float = 2.0,
    write_heavy_factor: float = 5.0,
    method: Method = "auto",
    sample_rows: int = 100_000,
    max_columns: int = 3,
    progress: Progress | None = None,
) -> IndexAdvice:
    """Return the indexes worth creating for ``queries`` (default: ``pg_stat_statements``).

    From ``pg_stat_statements``, the ``limit`` statements with the most total time and
    at least ``min_calls`` calls are read. An index is recommended only if some query's
    planner cost falls at least ``min_factor`` times with it (``write_heavy_factor``,
    if higher, on a table written more than read). ``method`` is ``"auto"`` (hypopg if it can be
    used, else a scratch copy), ``"hypopg"`` or ``"scratch"``; ``sample_rows`` caps the
    rows copied per table into a scratch copy. ``progress(phase, done, total)`` is
    called as work advances. Nothing is changed in the database: hypothetical indexes
    and an extension created for the run are rolled back, a scratch database dropped.
    """
    collected = (
        top_queries(conn, limit=limit, min_calls=min_calls)
        if queries is None
        else [q if isinstance(q, Query) else Query(q) for q in queries]
    )
    skipped: list[SkippedQuery] = []
    parsed: list[ParsedQuery] = []
    for query in collected:
        try:
            parsed.append(parse_query(query))
        except UnusableQuery as unusable:
            skipped.append(SkippedQuery(query.sql, unusable.reason))
    catalog = load_catalog(
        conn,
        (
            (ref.schema, ref.name)
            for query in parsed
            for scope in query.scopes
            for ref in scope.tables
            if not ref.virtual
        ),
    )
    work, candidates = _candidates(parsed, catalog, skipped, max_columns)
    head = _alembic_head(conn)
    if not candidates:
        return IndexAdvice(
            method=None,
            method_reason="no candidate index to try: existing indexes already lead with "
            "every column the queries compare or sort on",
            recommendations=[],
            queries_analyzed=len(work),
            candidates_tried=0,
            skipped=skipped,
            sampled_tables=[],
            notes=[],
            alembic_revision=head,
        )
    tables = _tables_read(work, catalog)

    def threshold(candidate: Candidate) -> float:
        heavy = _write_heavy(catalog.tables[candidate.table_oid])
        return max(min_factor, write_heavy_factor) if heavy else min_factor

    try:
        with open_planner(
            conn, tables, method=method, sample_rows=sample_rows, progress=progress
        ) as opened:
            planner = opened.planner
            targets = {c.table_oid for c in candidates}
            before = _plan_all(planner, work, targets, skipped, progress)
            after, sizes = _try_all(planner, work, candidates, before, progress)
            recommendations = [
                _recommend(planner, catalog, work, before, after, sizes, pick, served, threshold)
                for pick, served in _choose(work, before, after, threshold)
            ]
    except psycopg.Error as error:  # not a statement that failed to plan: the session did
        detail = redact_text(str(error)).strip().splitlines()
        raise PgwardenError(
            f"database error while trying candidate indexes: {detail[0] if detail else error}",
            hint="Run it again; if it persists, try the other --method.",
        ) from error
    sampled = [table for table in opened.tables if table.sampled]
    _unique_names(conn, recommendations)
    recommendations.sort(key=lambda r: -sum(_saving(q) for q in r.queries))
    return IndexAdvice(
        method=opened.method,
        method_reason=opened.reason,
        recommendations=recommendations,
        queries_analyzed=len(work),
        candidates_tried=len(after),
        skipped=skipped,
        sampled_tables=sampled,
        notes=list(opened.notes),
        alembic_revision=head,
    )


def _candidates(
    parsed: list[ParsedQuery], catalog: QueryCatalog, skipped: list[SkippedQuery], max_columns: int
) -> tuple[list[_Work], list[Candidate]]:
    work: list[_Work] = []
    found: dict[Candidate, None] = {}
    for query in parsed:
        uses = resolve(query, catalog)
        if not uses:
            skipped.append(
                SkippedQuery(query.query.sql, "compares or sorts on no column of a table")
            )
            continue
        work.append(_Work(query, {use.table.oid for use in uses}))
        for candidate in candidates_for(uses, max_columns=max_columns):
            if covering_index(candidate, catalog.tables[candidate.table_oid]) is None:
                found.setdefault(candidate)
    return work, list(found)


def _tables_read(work: list[_Work], catalog: QueryCatalog) -> list[QueriedTable]:
    """Return the application's relations the queries read: a scratch copy needs them all."""
    found: dict[int, QueriedTable] = {}
    for item in work:
        for scope in item.parsed.scopes:
            for ref in scope.tables:
                table = None if ref.virtual else catalog.table(ref.schema, ref.name)
                if table is not None and table.application:
                    found.setdefault(table.oid, table)
    return list(found.values())


def _plan_all(
    planner: Planner,
    work: list[_Work],
    candidate_tables: set[int],
    skipped: list[SkippedQuery],
    progress: Progress | None,
) -> dict[int, float]:
    """Return the cost of each query that a candidate could serve, as things are."""
    relevant = [i for i, item in enumerate(work) if item.tables & candidate_tables]
    before: dict[int, float] = {}
    for done, i in enumerate(relevant):
        if progress is not None:
            progress("planning queries", done, len(relevant))
        try:
            before[i] = planner.plan(work[i].parsed).cost
        except PlanFailed as failed:
            skipped.append(SkippedQuery(work[i].parsed.query.sql, f"cannot be planned: {failed}"))
    return before


def _try_all(
    planner: Planner,
    work: list[_Work],
    candidates: list[Candidate],
    before: dict[int, float],
    progress: Progress | None,
) -> tuple[dict[Candidate, dict[int, float]], dict[Candidate, int | None]]:
    """Return, per candidate, the cost of each query whose plan uses it, and its size."""
    after: dict[Candidate, dict[int, float]] = {}
    sizes: dict[Candidate, int | None] = {}
    for done, candidate in enumerate(candidates):
        if progress is not None:
            progress("trying candidates", done, len(candidates))
        users = [i for i in before if candidate.table_oid in work[i].tables]
        if not users:
            continue
        try:
            with planner.hypothetical(candidate) as probe:
                costs: dict[int, float] = {}
                for i in users:
                    try:
                        plan = planner.plan(work[i].parsed)
                    except PlanFailed:
                        continue
                    if probe.name in plan.indexes and plan.cost < before[i]:
                        costs[i] = plan.cost
                after[candidate] = costs
                sizes[candidate] = probe.size_bytes
        except PlanFailed:
            continue  # a column type B-tree cannot index, say
    if progress is not None:
        progress("trying candidates", len(candidates), len(candidates))
    return after, sizes


def _choose(
    work: list[_Work],
    before: dict[int, float],
    after: dict[Candidate, dict[int, float]],
    threshold: Callable[[Candidate], float],
) -> list[tuple[Candidate, list[int]]]:
    """Pick the fewest, shortest indexes that give each query (nearly) its best plan."""
    good: dict[Candidate, dict[int, float]] = {
        candidate: {
            i: cost
            for i, cost in costs.items()
            if before[i] / max(cost, 0.01) >= threshold(candidate)
        }
        for candidate, costs in after.items()
    }
    best: dict[int, float] = {}
    for costs in good.values():
        for i, cost in costs.items():
            best[i] = min(best.get(i, math.inf), cost)
    serves = {
        candidate: {i for i, cost in costs.items() if cost <= best[i] * (1 + _TOLERANCE)}
        for candidate, costs in good.items()
    }
    uncovered = set(best)
    chosen: list[tuple[Candidate, list[int]]] = []

    def rank(c: Candidate, open_: set[int]) -> tuple[int, int, bool, float, str]:
        gained = serves[c] & open_
        saving = sum((before[i] - good[c][i]) * (work[i].parsed.query.calls or 1) for i in gained)
        # more queries served, fewer columns, partial (smaller) first, bigger saving
        return (-len(gained), len(c.keys), c.predicate is None, -saving, c.definition())

    while uncovered:
        options = [c for c in serves if serves[c] & uncovered]
        if not options:
            break
        pick = min(options, key=lambda c: rank(c, uncovered))
        served = sorted(serves[pick] & uncovered)
        chosen.append((pick, served))
        uncovered -= set(served)
    return chosen


def _recommend(
    planner: Planner,
    catalog: QueryCatalog,
    work: list[_Work],
    before: dict[int, float],
    after: dict[Candidate, dict[int, float]],
    sizes: dict[Candidate, int | None],
    candidate: Candidate,
    served: list[int],
    threshold: Callable[[Candidate], float],
) -> IndexRecommendation:
    table = catalog.tables[candidate.table_oid]
    size = sizes.get(candidate)
    source = "hypopg"
    if size is None:
        source = "statistics"
        size = estimate_size(table, candidate.keys, _fraction(planner, table, candidate))
    heavy = _write_heavy(table)
    notes = []
    if heavy:
        notes.append(
            f"{table.qualified} is written more than read ({table.writes:,} rows inserted, "
            f"updated or deleted against {table.reads:,} scans): every insert, and every "
            "update of an indexed column, also updates this index, so it had to cut a "
            f"query's cost at least {threshold(candidate):g}x."
        )
    return IndexRecommendation(
        schema=table.schema,
        table=table.name,
        name=index_name(candidate),
        keys=list(candidate.keys),
        predicate=candidate.predicate,
        queries=[
            ServedQuery(
                sql=work[i].parsed.query.sql,
                calls=work[i].parsed.query.calls,
                cost_before=before[i],
                cost_after=after[candidate][i],
            )
            for i in served
        ],
        size_bytes=size,
        size_source=source,
        write_heavy=heavy,
        notes=notes,
    )


def _write_heavy(table: QueriedTable) -> bool:
    return table.writes > table.reads


def _fraction(planner: Planner, table: QueriedTable, candidate: Candidate) -> float:
    """Return the share of the table's rows a partial index holds, as the planner sees it."""
    if candidate.predicate is None:
        return 1.0
    try:
        part = planner.plan_sql(f"SELECT 1 FROM {table.qualified} WHERE {candidate.predicate}")
        whole = planner.plan_sql(f"SELECT 1 FROM {table.qualified}")
    except PlanFailed:
        return 1.0
    return min(1.0, part.rows / whole.rows) if whole.rows > 0 else 1.0


_TAKEN = text("SELECT to_regclass(:name) IS NOT NULL")


def _unique_names(conn: Connection, recommendations: list[IndexRecommendation]) -> None:
    """Rename recommendations whose name a relation (or another recommendation) has."""
    used: set[tuple[str, str]] = set()
    for position, index in enumerate(recommendations):
        name, suffix = index.name, 1
        while (index.schema, name) in used or conn.execute(
            _TAKEN, {"name": qualified(index.schema, name, plain=True)}
        ).scalar():
            name = truncated_name(index.name, suffix=f"_{suffix}")
            suffix += 1
        used.add((index.schema, name))
        if name != index.name:
            recommendations[position] = replace(index, name=name)


def _saving(query: ServedQuery) -> float:
    return (query.cost_before - query.cost_after) * (query.calls or 1)


_ALEMBIC_HEAD = text(
    """
SELECT version_num
FROM alembic_version
"""
)


def _alembic_head(conn: Connection) -> str | None:
    """Return the database's Alembic revision when it has exactly one."""
    exists = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
    if not exists:
        return None
    with conn.begin_nested():
        heads = conn.execute(_ALEMBIC_HEAD).scalars().all()
    return str(heads[0]) if len(heads) == 1 else None
