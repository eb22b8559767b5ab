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

Choosing among candidates (:mod:`pgwarden.advise.choosing`): a query's best
candidates are those within 10% of the cheapest plan any candidate gives it; then,
greedily, the candidate that is among the best for the most queries not yet served
wins, ties going to fewer columns, then the smaller index, then the bigger saving. So
one two-column index that serves three queries beats three single-column ones, and a
one-column index beats a two-column one that is no better. A table that is written
more than read (inserted, updated and deleted rows against scans, in
``pg_stat_user_tables``) must gain ``write_heavy_factor`` instead, since every write
also maintains the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.advise.candidates import Candidate, candidates_for, covering_index, resolve
from pgwarden.advise.catalog import QueriedTable, QueryCatalog, immutable, load_catalog
from pgwarden.advise.choosing import Trials, choose, choose_within, saving, unserved
from pgwarden.advise.evaluate import Method, PlanFailed, Planner, open_planner
from pgwarden.advise.parsing import ParsedQuery, UnusableQuery, parse_query
from pgwarden.advise.queries import Query, SkippedQuery, top_queries
from pgwarden.advise.recommend import Names, recommend
from pgwarden.advise.report import IndexAdvice, estimate_size
from pgwarden.errors import PgwardenError
from pgwarden.urls import redact_text

__all__ = ["advise_indexes"]

Progress = Callable[[str, int, int], None]


@dataclass
class _Work:
    """A query with something to index, and the tables whose indexes it could use."""

    parsed: ParsedQuery
    tables: set[int]
    origins: set[Candidate]


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
    brin_min_rows: int = 100_000,
    max_size_bytes: int | None = None,
    progress: Progress | None = None,
) -> IndexAdvice:
    """Return the indexes worth creating for ``queries`` (default: ``pg_stat_statements``).

    From ``pg_stat_statements``, the ``limit`` statements with the most total time and
    at least ``min_calls`` calls are read. An index is recommended only if some query's
    planner cost falls at least ``min_factor`` times with it (``write_heavy_factor``,
    if higher, on a table written more than read). ``method`` is ``"auto"`` (hypopg if it can be
    used, else a scratch copy), ``"hypopg"`` or ``"scratch"``; ``sample_rows`` caps the
    rows copied per table into a scratch copy. BRIN is tried on tables of at least
    ``brin_min_rows`` rows. With ``max_size_bytes``, indexes are picked one at a time
    by the planner cost (cost x calls) they save per byte, within that total size.
    ``progress(phase, done, total)`` is
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
    work, candidates = _candidates(conn, parsed, catalog, skipped, max_columns, brin_min_rows)
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
        table = catalog.tables[candidate.table_oid]
        heavy = table.writes > table.reads
        return max(min_factor, write_heavy_factor) if heavy else min_factor

    try:
        with open_planner(
            conn, tables, method=method, sample_rows=sample_rows, progress=progress
        ) as opened:
            planner = opened.planner
            targets = {c.table_oid for c in candidates}
            trials = Trials([item.parsed.query for item in work], [item.origins for item in work])
            trials.before = _plan_all(planner, work, targets, skipped, progress)
            notes = _try_all(planner, work, candidates, trials, progress)
            names = Names(conn)
            if max_size_bytes is None:
                chosen = choose(trials, threshold)
            else:

                def size(candidate: Candidate) -> int:
                    known = trials.sizes.get(candidate)
                    table = catalog.tables[candidate.table_oid]
                    return known if known is not None else estimate_size(table, candidate.keys)

                chosen = choose_within(trials, threshold, max_size_bytes, size)
            recommendations = [
                recommend(planner, catalog, trials, pick, served, threshold, names)
                for pick, served in chosen
            ]
    except psycopg.Error as error:  # not a statement that failed to plan: the session did
        detail = redact_text(str(error)).strip().splitlines()
        raise PgwardenError(
            f"database error while trying candidate indexes: {detail[0] if detail else error}",
            hint="Run it again; if it persists, try the other --method.",
        ) from error
    sampled = [table for table in opened.tables if table.sampled]
    recommendations.sort(key=lambda r: -sum(saving(q) for q in r.queries))
    return IndexAdvice(
        method=opened.method,
        method_reason=opened.reason,
        recommendations=recommendations,
        queries_analyzed=len(work),
        candidates_tried=len(trials.after),
        skipped=skipped,
        sampled_tables=sampled,
        notes=[*opened.notes, *notes],
        alembic_revision=head,
        unserved=unserved(
            trials, {i for _, served in chosen for i in served}, threshold, max_size_bytes
        ),
    )


def _candidates(
    conn: Connection,
    parsed: list[ParsedQuery],
    catalog: QueryCatalog,
    skipped: list[SkippedQuery],
    max_columns: int,
    brin_min_rows: int,
) -> tuple[list[_Work], list[Candidate]]:
    work: list[_Work] = []
    found: dict[Candidate, None] = {}
    verdicts: dict[tuple[object, ...], bool] = {}

    def indexable(candidate: Candidate) -> bool:
        """Return whether every expression key is immutable, as an index needs."""
        table = catalog.tables[candidate.table_oid]
        for key in candidate.keys:
            if key.expression is None:
                continue
            column_type = table.types.get(key.column, "")
            cache = (key.calls, column_type)
            if cache not in verdicts:
                verdicts[cache] = immutable(conn, key.calls, column_type)
            if not verdicts[cache]:
                return False
        return True

    for query in parsed:
        uses = resolve(query, catalog)
        if not uses:
            skipped.append(
                SkippedQuery(query.query.sql, "compares or sorts on no column of a table")
            )
            continue
        kept = [
            candidate
            for candidate in candidates_for(
                uses, max_columns=max_columns, brin_min_rows=brin_min_rows
            )
            if indexable(candidate)
        ]
        if not kept and any(
            key.expression for use in uses for key in (*use.equality, *use.ranges, *use.sort)
        ):
            skipped.append(
                SkippedQuery(
                    query.query.sql,
                    "its expression is not IMMUTABLE (it depends on a setting such as the "
                    "time zone), so no index can hold it",
                )
            )
            continue
        work.append(_Work(query, {use.table.oid for use in uses}, set(kept)))
        for candidate in kept:
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
    trials: Trials,
    progress: Progress | None,
) -> list[str]:
    """Fill ``trials`` with each candidate's cost for the queries whose plans read it.

    Return notes on the candidates that could not be tried (a method hypopg cannot
    make, a column type the method cannot index).
    """
    failed: dict[str, list[str]] = {}
    for done, candidate in enumerate(candidates):
        if progress is not None:
            progress("trying candidates", done, len(candidates))
        users = [i for i in trials.before if candidate.table_oid in work[i].tables]
        if not users:
            continue
        try:
            with planner.hypothetical(candidate) as probe:
                costs: dict[int, float] = {}
                used: dict[int, set[str]] = {}
                for i in users:
                    try:
                        plan = planner.plan(work[i].parsed)
                    except PlanFailed:
                        continue
                    read = probe.used(plan)
                    if read and plan.cost < trials.before[i]:
                        costs[i] = plan.cost
                        used[i] = read
                trials.after[candidate] = costs
                trials.used[candidate] = used
                trials.sizes[candidate] = probe.size_bytes
        except PlanFailed as error:
            failed.setdefault(str(error), []).append(f"{candidate.shape} on {candidate.table}")
            trials.failed[candidate] = str(error)
    if progress is not None:
        progress("trying candidates", len(candidates), len(candidates))
    notes = []
    for reason, shapes in failed.items():
        hint = (
            " (the scratch-copy method builds them: --method scratch)" if "hypopg" in reason else ""
        )
        notes.append(
            f"not tried, {reason}{hint}: "
            + ", ".join(shapes[:5])
            + (" ..." if len(shapes) > 5 else "")
        )
    return notes


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
