"""Turn what queries compare and sort on into candidate indexes.

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
- when a column of few values (``PARTIAL_MAX_DISTINCT``) is compared with a literal
  (``status = 'active'``), the same index on the other columns with that comparison
  as its predicate: a partial index;
- the range column before the equality columns as well, so the planner says which
  order wins rather than a rule of thumb;
- a key may be an expression over one column (``lower(email)``,
  ``date_trunc('day', ts)``, ``(body ->> 'k')``), when the query compares or sorts on
  it; only immutable ones are kept (checked by the caller against ``pg_proc``);
- GIN for containment, overlap, key tests and full-text match on jsonb, arrays and
  ``tsvector`` (``@>``, ``&&``, ``?``, ``@@``), GiST for ranges (``&&``, ``@>``, ``<@``);
- BRIN for a range over a column whose rows lie in its order on disk (``pg_stats``
  correlation near 1, as in an append-only timestamp), on a table of ``brin_min_rows``.

Candidates an existing valid index already leads with are dropped before any planning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pgwarden._sql import qualified, quote_identifier
from pgwarden.advise.catalog import ExistingIndex, QueriedTable, QueryCatalog
from pgwarden.advise.methods import covering_columns, other_methods, pages_per_range
from pgwarden.advise.parsing import ColumnPath, Expression, ParsedQuery, Scope, TableRef

__all__ = ["Candidate", "IndexKey", "TableUse", "candidates_for", "covering_index", "resolve"]


@dataclass(frozen=True)
class IndexKey:
    """One key of an index: a column, or an ``expression`` over that column.

    ``calls`` are the functions and operators the expression applies (see
    :class:`pgwarden.advise.parsing.Expression`).
    """

    column: str
    descending: bool = False
    expression: str | None = None
    calls: tuple[tuple[str, str, int, int], ...] = field(default=(), compare=False)

    @property
    def sql(self) -> str:
        """Return the key as it reads in ``CREATE INDEX``."""
        key = (
            f"({self.expression})" if self.expression else quote_identifier(self.column, plain=True)
        )
        return key + (" DESC" if self.descending else "")

    @property
    def label(self) -> str:
        """Return a short name for the key, for an index's name: ``lower_email``."""
        if self.expression is None:
            return self.column
        head = self.calls[0][1] if self.calls and self.calls[0][0] == "f" else "expr"
        return f"{head}_{self.column}"

    def flipped(self) -> IndexKey:
        """Return the key in the other direction."""
        return replace(self, descending=not self.descending)


@dataclass(frozen=True)
class Candidate:
    """An index that might help: its table, method, keys and partial predicate.

    ``unordered`` leading keys are equality columns whose order does not matter to a
    lookup, so an existing index with the same columns in another order covers them.
    ``predicate_columns`` are the columns the partial predicate compares. ``using`` is
    the access method: ``btree``, ``gin``, ``gist`` or ``brin``.
    """

    table_oid: int
    schema: str
    table: str
    keys: tuple[IndexKey, ...]
    predicate: str | None = None
    unordered: int = field(default=0, compare=False)
    predicate_columns: tuple[str, ...] = field(default=(), compare=False)
    using: str = "btree"
    pages_per_range: int | None = None  # BRIN's block range, for a table of few ranges
    include: tuple[str, ...] = ()  # non-key columns, for an index-only scan

    @property
    def columns(self) -> list[str]:
        """Return the key columns' names."""
        return [key.column for key in self.keys]

    @property
    def shape(self) -> str:
        """Return the keys and predicate as a reader would write them: ``(a, lower(b))``."""
        using = "" if self.using == "btree" else f"{self.using} "
        keys = ", ".join(key.sql for key in self.keys)
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return f"{using}({keys}){self._include}{where}"

    @property
    def _include(self) -> str:
        if not self.include:
            return ""
        return " INCLUDE (" + ", ".join(quote_identifier(c, plain=True) for c in self.include) + ")"

    def definition(
        self,
        name: str | None = None,
        *,
        concurrently: bool = False,
        only: bool = False,
        table: str | None = None,
    ) -> str:
        """Return the ``CREATE INDEX`` statement, without the closing semicolon.

        ``only`` builds the index on a partitioned table alone (``ON ONLY``), for the
        partitions' indexes to be attached to; ``table`` (quoted) names another table
        with the same columns: a partition.
        """
        head = "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX"
        named = f" {quote_identifier(name, plain=True)}" if name else ""
        target = table or qualified(self.schema, self.table, plain=True)
        keys = ", ".join(key.sql for key in self.keys)
        using = "" if self.using == "btree" else f" USING {self.using}"
        storage = (
            f" WITH (pages_per_range = {self.pages_per_range})" if self.pages_per_range else ""
        )
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return (
            f"{head}{named} ON {'ONLY ' if only else ''}{target}{using} ({keys})"
            f"{self._include}{storage}{where}"
        )


@dataclass
class TableUse:
    """What one query level compares and sorts on in one table it reads."""

    table: QueriedTable
    equality: list[IndexKey] = field(default_factory=list)
    ranges: list[IndexKey] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    constants: dict[str, str] = field(default_factory=dict)
    sort: list[IndexKey] = field(default_factory=list)
    searches: list[tuple[IndexKey, str]] = field(default_factory=list)
    reads: set[str] | None = field(default_factory=set)  # every column read; None: ``*``


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
            key = _key(found.column, condition.expression)
            other = _lookup(parsed.scopes, index, condition.other, catalog)
            if condition.kind == "search":
                if (key, condition.operator or "") not in use.searches:
                    use.searches.append((key, condition.operator or ""))
            elif condition.other is None or (other is not None and other.scope != index):
                # a value, or a column of an enclosing level: fixed for this level's scan
                _add(use.equality if condition.kind == "eq" else use.ranges, key)
                few = use.table.distinct.get(found.column, 0.0) <= PARTIAL_MAX_DISTINCT
                if condition.constant is not None and condition.expression is None and few:
                    use.constants.setdefault(found.column, condition.constant)
            elif (
                condition.kind == "eq"
                and (other is None or other.ref != found.ref)
                and found.column not in use.joins
            ):
                use.joins.append(found.column)
        _sort(parsed.scopes, index, catalog, level)
        _reads(parsed.scopes, index, catalog, level)
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
    keys = [
        replace(_key(f.column, key.expression), descending=key.descending)
        for f, key in zip(resolved, sort, strict=True)
    ]
    if keys[0].descending:  # an index is read backwards as easily: lead with ascending
        keys = [k.flipped() for k in keys]
    use.sort = keys


def _reads(scopes: list[Scope], index: int, catalog: QueryCatalog, level: _Level) -> None:
    """Note the columns the level reads of each table, for INCLUDE candidates."""
    reads = scopes[index].reads
    for use in level.uses.values():
        if reads is None:
            use.reads = None
    if reads is None:
        return
    for path in reads:
        found = _lookup(scopes, index, path, catalog)
        if found is not None and found.scope == index:
            reader = level.uses.get(found.ref.key)
            if reader is not None and reader.reads is not None:
                reader.reads.add(found.column)
    for ref_key, use in level.uses.items():
        if any(r.key == ref_key and r.virtual for r in scopes[index].tables):
            use.reads = None


def _key(column: str, expression: Expression | None) -> IndexKey:
    if expression is None:
        return IndexKey(column)
    return IndexKey(column, expression=expression.sql, calls=expression.calls)


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


def _add(keys: list[IndexKey], key: IndexKey) -> None:
    if key not in keys:
        keys.append(key)


# A literal makes a partial index only on a column of this few values (a state, a
# kind): a predicate on an id would make an index per id.
PARTIAL_MAX_DISTINCT = 100


def candidates_for(
    uses: Iterable[TableUse], *, max_columns: int = 3, brin_min_rows: int = 100_000
) -> list[Candidate]:
    """Return the candidate indexes for these table uses, without duplicates, in order."""
    found: dict[Candidate, None] = {}
    for use in uses:
        table = use.table
        for keys, unordered, predicate in _shapes(use):
            keys = keys[:max_columns]
            if keys:
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
                rest = covering_columns(use, candidate)
                if rest:
                    found.setdefault(replace(candidate, include=rest))
        for key, using in other_methods(use, brin_min_rows):
            pages = pages_per_range(table) if using == "brin" else None
            found.setdefault(
                Candidate(
                    table.oid, table.schema, table.name, (key,), using=using, pages_per_range=pages
                )
            )
    return list(found)


def _shapes(use: TableUse) -> Iterable[tuple[list[IndexKey], int, str | None]]:
    # the most selective equality column first: the index then serves lookups by it alone
    equal = sorted(use.equality, key=lambda k: -use.table.distinct.get(k.column, 0.0))
    ranges = [k for k in use.ranges if k not in use.equality]
    joins = [IndexKey(c) for c in use.joins if IndexKey(c) not in use.equality]
    order = [k for k in use.sort if k not in use.equality and k.flipped() not in use.equality]
    for key in [*equal, *ranges, *joins]:
        yield [key], 1 if key in equal else 0, None
    if len(equal) > 1:
        yield equal, len(equal), None
    if equal and ranges:
        yield [*equal, ranges[0]], len(equal), None
        # the other order too: the planner, not the rule, says which serves better
        yield [ranges[0], *equal], 0, None
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
        rest = [k for k in equal if k.expression or k.column not in use.constants]
        if rest or ranges:
            yield [*rest, *ranges[:1]], len(rest), predicate
        if order:
            yield [*rest, *order], len(rest), predicate


def covering_index(candidate: Candidate, table: QueriedTable) -> ExistingIndex | None:
    """Return an existing index that leads with the candidate's columns, if there is one.

    Only a non-partial index counts: it serves every query the candidate could. Among
    the candidate's leading equality columns, order does not matter.
    """
    if candidate.using != "btree" or any(key.expression for key in candidate.keys):
        return None  # the catalog's list holds plain B-tree keys: the planner compares
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
