"""Turn a chosen candidate into a recommendation, and say why it won.

:func:`recommend` turns a pick of :mod:`pgwarden.advise.choosing` into an
:class:`IndexRecommendation` with its proof (each query's cost before and after, with
its calls), its cost (size, and the writes that will maintain it), the alternatives it
beat, the existing indexes it makes redundant and, on a partitioned table, the index
of each partition.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified
from pgwarden._units import format_size
from pgwarden.advise.candidates import Candidate
from pgwarden.advise.catalog import ExistingIndex, QueriedTable, QueryCatalog
from pgwarden.advise.choosing import BRIN_SIZE_RATIO, TOLERANCE, Threshold, Trials
from pgwarden.advise.evaluate import PlanFailed, Planner
from pgwarden.advise.report import (
    IndexRecommendation,
    PartitionIndex,
    ServedQuery,
    estimate_size,
    index_name,
    truncated_name,
)

__all__ = ["Names", "recommend"]

_TAKEN = text("SELECT to_regclass(:name) IS NOT NULL")


class Names:
    """Hand out index names no relation and no earlier recommendation has."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.used: set[tuple[str, str]] = set()

    def take(self, schema: str, wanted: str) -> str:
        """Return ``wanted``, or it with ``_1``, ``_2`` ... when that is taken."""
        name, suffix = wanted, 1
        while (schema, name) in self.used or self.conn.execute(
            _TAKEN, {"name": qualified(schema, name, plain=True)}
        ).scalar():
            name = truncated_name(wanted, suffix=f"_{suffix}")
            suffix += 1
        self.used.add((schema, name))
        return name


def recommend(
    planner: Planner,
    catalog: QueryCatalog,
    trials: Trials,
    candidate: Candidate,
    served: list[int],
    threshold: Threshold,
    names: Names,
) -> IndexRecommendation:
    """Return the recommendation of ``candidate`` for the queries it ``served``."""
    table = catalog.tables[candidate.table_oid]
    size = trials.sizes.get(candidate)
    source = "built" if planner.method == "scratch copy" else planner.method
    fraction = _fraction(planner, table, candidate)
    if size is None:
        source = "statistics"
        size = estimate_size(table, candidate.keys, fraction)
    notes = []
    heavy = table.writes > table.reads
    if heavy:
        notes.append(
            f"{table.qualified} is written more than read ({table.writes:,} rows inserted, "
            f"updated or deleted against {table.reads:,} scans): every insert, and every "
            "update of an indexed column, also updates this index, so it had to cut a "
            f"query's cost at least {threshold(candidate):g}x."
        )
    elif table.writes:
        notes.append(
            f"write overhead: {table.writes:,} rows inserted, updated or deleted in "
            f"{table.qualified} so far (against {table.reads:,} scans); each insert, and each "
            "update of an indexed column, also writes this index."
        )
    if candidate.predicate is not None and fraction < 1.0:
        whole = estimate_size(table, candidate.keys)
        notes.append(
            f"partial: holds {fraction:.1%} of the rows, about {format_size(size)} against "
            f"{format_size(whole)} for the same index on every row."
        )
    replaces = [index for index in table.indexes if _made_redundant(index, candidate)]
    for index in replaces:
        notes.append(
            f"makes {index.name} ({format_size(index.size_bytes)}) redundant: its keys lead "
            "this index, which serves its queries too; drop it after this one is built."
        )
    notes.append(_why(trials, candidate, served))
    name = names.take(table.schema, index_name(candidate))
    partitions, on_parent = _partitions(table, candidate, trials, served, name, names)
    if not on_parent:
        notes.append(
            "only partitions "
            + ", ".join(p.table for p in partitions)
            + " are read through it: each gets its own index, the parent none."
        )
    return IndexRecommendation(
        schema=table.schema,
        table=table.name,
        name=name,
        keys=list(candidate.keys),
        predicate=candidate.predicate,
        queries=[
            ServedQuery(
                sql=trials.queries[i].sql,
                calls=trials.queries[i].calls,
                cost_before=trials.before[i],
                cost_after=trials.after[candidate][i],
            )
            for i in served
        ],
        size_bytes=size,
        size_source=source,
        write_heavy=heavy,
        notes=notes,
        using=candidate.using,
        pages_per_range=candidate.pages_per_range,
        include=list(candidate.include),
        partitions=partitions,
        on_parent=on_parent,
        replaces=[index.name for index in replaces],
        writes=table.writes,
    )


def _why(trials: Trials, candidate: Candidate, served: list[int]) -> str:
    """Say why ``candidate`` won over the other candidates for the same queries."""

    def total(c: Candidate) -> float:
        costs = trials.after.get(c, {})
        return sum(costs.get(i, trials.before[i]) * trials.calls(i) for i in served)

    mine = total(candidate)
    rivals = [
        c
        for c in trials.after
        if c != candidate
        and c.table_oid == candidate.table_oid
        and set(trials.after[c]) & set(served)
    ]
    if not rivals:
        return f"chosen: the only candidate the planner used for these queries (total {mine:,.1f})."
    said = []
    for rival in sorted(rivals, key=total)[:2]:
        theirs = total(rival)
        if candidate.using == "brin" and rival.using == "btree" and rival.keys == candidate.keys:
            reason = f"a B-tree over {BRIN_SIZE_RATIO}x the size of this BRIN index"
        elif theirs > mine * (1 + TOLERANCE):
            reason = "this one plans cheaper"
        elif not set(served) <= set(trials.after[rival]):
            reason = "it serves fewer of these queries"
        else:
            smaller = len(candidate.keys) < len(rival.keys) or (
                (trials.sizes.get(candidate) or 0) <= (trials.sizes.get(rival) or 0)
            )
            reason = f"within {TOLERANCE:.0%} of each other, this one is " + (
                "shorter or smaller" if smaller else "cheaper"
            )
        said.append(f"{rival.shape} at {theirs:,.1f} ({reason})")
    return f"chosen at total planned cost {mine:,.1f} (cost x calls) over " + "; ".join(said) + "."


def _made_redundant(index: ExistingIndex, candidate: Candidate) -> bool:
    """Return whether an existing index's keys lead the candidate's, so it can go."""
    if index.enforces or index.partial or candidate.predicate or candidate.using != "btree":
        return False
    if any(key.expression or key.descending for key in candidate.keys):
        return False
    keys = tuple(candidate.columns)
    return len(index.columns) < len(keys) and keys[: len(index.columns)] == index.columns


def _partitions(
    table: QueriedTable,
    candidate: Candidate,
    trials: Trials,
    served: list[int],
    name: str,
    names: Names,
) -> tuple[list[PartitionIndex], bool]:
    """Return the partitions' indexes, and whether the parent gets one (all are read)."""
    if not table.partitioned:
        return [], True
    leaves = [p for p in table.partitions if not p.partitioned]
    read: set[str] = set()
    for i in served:
        read |= trials.used.get(candidate, {}).get(i, set())
    hot = [p for p in leaves if p.name in read or p.qualified in read]
    if hot and len(hot) < len(leaves):
        return [
            PartitionIndex(
                p.schema, p.name, names.take(p.schema, index_name(candidate, p.name)), None
            )
            for p in hot
        ], False
    made: dict[str, str] = {table.name: qualified(table.schema, name, plain=True)}
    found = []
    for part in table.partitions:  # parents before their partitions
        own = names.take(part.schema, index_name(candidate, part.name))
        made[part.name] = qualified(part.schema, own, plain=True)
        found.append(
            PartitionIndex(part.schema, part.name, own, made[part.parent], part.partitioned)
        )
    return found, True


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
