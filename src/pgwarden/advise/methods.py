"""Index types beyond a plain B-tree on the columns a query compares: GIN, GiST and
BRIN, and B-tree with INCLUDE columns for an index-only scan.

:mod:`pgwarden.advise.candidates` asks these for each table use; the planner then says
whether any of them pays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgwarden.advise.candidates import Candidate, IndexKey, TableUse
    from pgwarden.advise.catalog import QueriedTable

__all__ = ["covering_columns", "other_methods", "pages_per_range"]

# Column types whose comparisons a GIN index serves, and those GiST serves (ranges).
_GIN_TYPES = ("jsonb", "tsvector")
_GIST_SUFFIXES = ("range", "multirange")
_BRIN_TYPES = frozenset(
    {"timestamp without time zone", "timestamp with time zone", "date", "bigint", "integer"}
)
# How closely rows must follow a column's order on disk for BRIN to pay.
_BRIN_CORRELATION = 0.95


# INCLUDE at most this many columns: wider, the index nears a copy of the table.
_MAX_INCLUDE = 2


def covering_columns(use: TableUse, candidate: Candidate) -> tuple[str, ...]:
    """Return the columns the query reads that the candidate's keys lack, when few."""
    if use.reads is None:
        return ()
    keys = {key.column for key in candidate.keys if key.expression is None}
    if any(key.expression for key in candidate.keys):
        return ()
    # a partial index answers its predicate columns without holding them
    rest = tuple(sorted(use.reads - keys - set(candidate.predicate_columns)))
    return rest if 0 < len(rest) <= _MAX_INCLUDE else ()


def pages_per_range(table: QueriedTable) -> int | None:
    """Return a BRIN block range that cuts the table into some 256 ranges, if the default
    (128 pages) makes fewer: a range scan then reads a small part of the table."""
    if table.relpages >= 128 * 256:
        return None
    return max(2, table.relpages // 256)


def other_methods(use: TableUse, brin_min_rows: int) -> Iterable[tuple[IndexKey, str]]:
    """Yield the GIN, GiST and BRIN candidates' key and method."""
    for key, _operator in use.searches:
        kind = "tsvector" if key.expression else use.table.types.get(key.column, "")
        if kind in _GIN_TYPES or kind.endswith("[]"):
            yield key, "gin"
        elif kind.endswith(_GIST_SUFFIXES):
            yield key, "gist"
    if use.table.reltuples >= brin_min_rows:
        for key in use.ranges:
            correlated = abs(use.table.correlation.get(key.column, 0.0)) >= _BRIN_CORRELATION
            if (
                key.expression is None
                and correlated
                and use.table.types.get(key.column) in _BRIN_TYPES
            ):
                yield key, "brin"
