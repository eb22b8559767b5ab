"""Turn what queries compare and sort on into candidate B-tree indexes.

Each query level's column references are resolved against the catalog: an alias or a
table name qualifies a column, and an unqualified column belongs to the one table of
that level (or of an enclosing one, for a correlated subquery) that has it. Then, per
table a level reads, the candidates are, in the usual B-tree order of equality columns
first and one range column last:

- each compared column alone;
- all equality columns together (the most selective first), then with the first
  range column after them;
- a join column followed by the table's equality columns (for a nested loop);
- the ``ORDER BY`` columns, after the equality columns, when they all belong to the
  table (so an index scan returns rows in order and a ``LIMIT`` stops early);
- when a column is compared with a literal (``status = 'active'``), the same index on
  the other columns with that comparison as its predicate: a partial index.

Candidates an existing valid index already leads with are dropped before any planning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pgwarden._sql import qualified, quote_identifier
from pgwarden.advise.catalog import ExistingIndex, QueriedTable, QueryCatalog
from pgwarden.advise.parsing import ColumnPath, ParsedQuery, Scope, TableRef

__all__ = ["Candidate", "IndexKey", "TableUse", "candidates_for", "covering_index", "resolve"]


@dataclass(frozen=True)
class IndexKey:
    """One key column of an index."""

    column: str
    descending: bool = False

    @property
    def sql(self) -> str:
        """Return the key as it reads in ``CREATE INDEX``."""
        return quote_identifier(self.column, plain=True) + (" DESC" if self.descending else "")


@dataclass(frozen=True)
class Candidate:
    """A B-tree index that might help: its table, key columns and partial predicate.

    ``unordered`` leading keys are equality columns whose order does not matter to a
    lookup, so an existing index with the same columns in another order covers them.
    ``predicate_columns`` are the columns the partial predicate compares.
    """

    table_oid: int
    schema: str
    table: str
    keys: tuple[IndexKey, ...]
    predicate: str | None = None
    unordered: int = field(default=0, compare=False)
    predicate_columns: tuple[str, ...] = field(default=(), compare=False)

    @property
    def columns(self) -> list[str]:
        """Return the key columns' names."""
        return [key.column for key in self.keys]

    def definition(self, name: str | None = None, *, concurrently: bool = False) -> str:
        """Return the ``CREATE INDEX`` statement, without the closing semicolon."""
        head = "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX"
        named = f" {quote_identifier(name, plain=True)}" if name else ""
        table = qualified(self.schema, self.table, plain=True)
        keys = ", ".join(key.sql for key in self.keys)
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return f"{head}{named} ON {table} ({keys}){where}"


@dataclass
class TableUse:
    """What one query level compares and sorts on in one table it reads."""

    table: QueriedTable
    equality: list[str] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    constants: dict[str, str] = field(default_factory=dict)
    sort: list[IndexKey] = field(default_factory=list)


@dataclass(frozen=True)
class _Resolved:
    scope: int
    ref: TableRef
    table: QueriedTable | None
    column: str


def resolve(parsed: ParsedQuery, catalog: QueryCatalog) -> list[TableUse]:
    """Return, per query level and table, the columns ``parsed`` compares and sorts on.

    Only application tables count (no catalogs, views or CTEs); columns that cannot be
    told apart (the same name in two tables, no qualifier) are left out.
    """
    uses: list[TableUse] = []
    for index, scope in enumerate(parsed.scopes):
        level = _Level()
        for condition in scope.conditions:
            found = _lookup(parsed.scopes, index, condition.column, catalog)
            if found is None or found.scope != index or (use := level.use(found)) is None:
                continue
            other = _lookup(parsed.scopes, index, condition.other, catalog)
            if condition.other is None or (other is not None and other.scope != index):
                # a value, or a column of an enclosing level: fixed for this level's scan
                _add(use.equality if condition.kind == "eq" else use.ranges, found.column)
                if condition.constant is not None:
                    use.constants.setdefault(found.column, condition.constant)
            elif condition.kind == "eq" and (other is None or other.ref != found.ref):
                _add(use.joins, found.column)
        _sort(parsed.scopes, index, catalog, level)
        uses.extend(level.uses.values())
    return uses


class _Level:
    """The table uses of one query level, by the name the level gives each table."""

    def __init__(self) -> None:
        self.uses: dict[str, TableUse] = {}

    def use(self, found: _Resolved) -> TableUse | None:
        if found.table is None or not found.table.user_table:
            return None
        return self.uses.setdefault(found.ref.key, TableUse(found.table))


def _sort(scopes: list[Scope], index: int, catalog: QueryCatalog, level: _Level) -> None:
    sort = scopes[index].sort
    found = [_lookup(scopes, index, key.column, catalog) for key in sort]
    resolved = [f for f in found if f is not None and f.scope == index]
    if not sort or len(resolved) != len(sort) or len({f.ref.key for f in resolved}) != 1:
        return  # the order is on more than one table, or on something not a table column
    use = level.use(resolved[0])
    if use is None:
        return
    keys = [IndexKey(f.column, key.descending) for f, key in zip(resolved, sort, strict=True)]
    if keys[0].descending:  # an index is read backwards as easily: lead with ascending
        keys = [IndexKey(k.column, not k.descending) for k in keys]
    use.sort = keys


def _lookup(
    scopes: list[Scope], index: int, path: ColumnPath | None, catalog: QueryCatalog
) -> _Resolved | None:
    """Find the table a column reference means, from this level outwards."""
    if not path:
        return None
    level: int | None = index
    while level is not None:
        scope = scopes[level]
        column = path[-1]
        if len(path) == 1:
            having = [
                (ref, table)
                for ref in scope.tables
                if not ref.virtual
                and (table := catalog.table(ref.schema, ref.name)) is not None
                and column in table.columns
            ]
            if len(having) == 1:
                return _Resolved(level, having[0][0], having[0][1], column)
            if having or any(ref.virtual for ref in scope.tables):
                return None  # ambiguous, or perhaps a column of a CTE or subquery
        else:
            for ref in scope.tables:
                named = ref.key == path[-2] and (len(path) == 2 or ref.schema == path[-3])
                if named:
                    table = None if ref.virtual else catalog.table(ref.schema, ref.name)
                    if table is not None and column not in table.columns:
                        table = None
                    return _Resolved(level, ref, table, column)
        level = scope.parent
    return None


def _add(columns: list[str], column: str) -> None:
    if column not in columns:
        columns.append(column)


def candidates_for(uses: Iterable[TableUse], *, max_columns: int = 3) -> list[Candidate]:
    """Return the candidate indexes for these table uses, without duplicates, in order."""
    found: dict[Candidate, None] = {}
    for use in uses:
        for keys, unordered, predicate in _shapes(use):
            keys = keys[:max_columns]
            if keys:
                table = use.table
                candidate = Candidate(
                    table.oid,
                    table.schema,
                    table.name,
                    tuple(keys),
                    predicate,
                    min(unordered, len(keys)),
                    tuple(sorted(use.constants)) if predicate else (),
                )
                found.setdefault(candidate)
    return list(found)


def _shapes(use: TableUse) -> Iterable[tuple[list[IndexKey], int, str | None]]:
    # the most selective equality column first: the index then serves lookups by it alone
    ranked = sorted(use.equality, key=lambda c: -use.table.distinct.get(c, 0.0))
    equal = [IndexKey(c) for c in ranked]
    ranges = [IndexKey(c) for c in use.ranges if c not in use.equality]
    joins = [IndexKey(c) for c in use.joins if c not in use.equality]
    order = [k for k in use.sort if k.column not in use.equality]
    for key in [*equal, *ranges, *joins]:
        yield [key], 1 if key in equal else 0, None
    if len(equal) > 1:
        yield equal, len(equal), None
    if equal and ranges:
        yield [*equal, ranges[0]], len(equal), None
    for join in joins:
        if equal:
            yield [join, *equal], 1 + len(equal), None
    if order:
        yield order, 0, None
        if equal:
            yield [*equal, *order], len(equal), None
    if use.constants:
        predicate = " AND ".join(
            f"{quote_identifier(column, plain=True)} = {literal}"
            for column, literal in sorted(use.constants.items())
        )
        rest = [k for k in equal if k.column not in use.constants]
        if rest or ranges:
            yield [*rest, *ranges[:1]], len(rest), predicate
        if order:
            yield [*rest, *order], len(rest), predicate


def covering_index(candidate: Candidate, table: QueriedTable) -> ExistingIndex | None:
    """Return an existing index that leads with the candidate's columns, if there is one.

    Only a non-partial index counts: it serves every query the candidate could. Among
    the candidate's leading equality columns, order does not matter.
    """
    columns = candidate.columns
    size = len(columns)
    for index in table.indexes:
        if index.partial or len(index.columns) < size:
            continue
        prefix = list(index.columns[:size])
        head = candidate.unordered
        if set(prefix[:head]) == set(columns[:head]) and prefix[head:] == columns[head:]:
            return index
    return None
