"""Read what a query filters, joins and sorts on, with pglast (PostgreSQL's own parser).

:func:`parse_query` turns a statement into :class:`ParsedQuery`: for every query level
(the main query, each CTE, subquery and set-operation arm) the tables it reads, the
comparisons its ``WHERE`` and ``JOIN ... ON`` make, and its ``ORDER BY``. Column
references are kept as written; :mod:`pgwarden.advise.candidates` resolves them
against the catalog.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pglast
from pglast import ast, enums
from pglast.parser import ParseError
from pglast.stream import RawStream

from pgwarden.advise.errors import UnusableQuery
from pgwarden.advise.queries import Query

__all__ = [
    "ColumnPath",
    "Condition",
    "Expression",
    "ParsedQuery",
    "Scope",
    "SortKey",
    "TableRef",
    "UnusableQuery",
    "parse_query",
]

ColumnPath = tuple[str, ...]

_EQUALITY = "="
_RANGE = frozenset({"<", ">", "<=", ">="})
# Operators a GIN or GiST index serves: containment, overlap, full-text match, key exists.
_SEARCH = frozenset({"@>", "<@", "&&", "@@", "?", "?|", "?&"})
# Operators that may stand in an index expression over a column (jsonb and hstore fields).
_FIELD_OPERATORS = frozenset({"->>", "->", "#>>", "#>"})


@dataclass(frozen=True)
class TableRef:
    """A relation a query level reads, as written; ``virtual`` for CTEs and subqueries."""

    schema: str | None
    name: str
    alias: str | None
    virtual: bool = False

    @property
    def key(self) -> str:
        """Return the name columns are qualified with in this query level."""
        return self.alias or self.name


@dataclass(frozen=True)
class Expression:
    """An expression over one column that an expression index could hold.

    ``sql`` is the expression as it reads in ``CREATE INDEX``, the column unqualified;
    ``calls`` are the functions (``("f", name, arguments, column position)``) and
    operators (``("o", name, 2, column position)``) it applies, whose volatility decides
    whether an index may hold it.
    """

    sql: str
    calls: tuple[tuple[str, str, int, int], ...]


@dataclass(frozen=True)
class Condition:
    """A comparison of ``column`` (or of an ``expression`` over it) an index could serve.

    ``kind`` is ``eq`` (``=``, ``IN``, ``= ANY``), ``range`` (``<``, ``>``,
    ``BETWEEN``) or ``search`` (``@>``, ``&&``, ``@@``: for GIN or GiST, ``operator``
    says which). ``other`` is the column on the other side when it is a plain column (a
    join, or a correlated reference); ``constant`` is the literal on the other side, as
    SQL, when it is one (``'active'``), which makes a partial-index predicate.
    """

    column: ColumnPath
    kind: Literal["eq", "range", "search"]
    other: ColumnPath | None = None
    constant: str | None = None
    expression: Expression | None = None
    operator: str | None = None


@dataclass(frozen=True)
class SortKey:
    """One ``ORDER BY`` column, or expression over one column."""

    column: ColumnPath
    descending: bool = False
    expression: Expression | None = None


@dataclass
class Scope:
    """One query level: what it reads, compares and sorts by."""

    tables: list[TableRef] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    limited: bool = False
    parent: int | None = None
    # every column the level reads (for an index-only scan), None when it reads ``*``
    reads: list[ColumnPath] | None = field(default_factory=list)


@dataclass(frozen=True)
class ParsedQuery:
    """A statement with the query levels an index could serve."""

    query: Query
    kind: Literal["select", "update", "delete"]
    params: int
    scopes: list[Scope]


def parse_query(query: Query) -> ParsedQuery:
    """Parse one statement into the query levels an index could serve.

    Raises :class:`UnusableQuery` for a statement that does not parse, is not a
    SELECT, UPDATE or DELETE, is an UPDATE or DELETE without WHERE, or has nothing
    an index could serve (no comparison of a column and no ORDER BY).
    """
    try:
        statements = pglast.parse_sql(query.sql)
    except ParseError as error:
        raise UnusableQuery(f"does not parse: {error}") from error
    if len(statements) != 1:
        raise UnusableQuery("not one statement")
    node = statements[0].stmt
    parser = _Parser()
    kind: Literal["select", "update", "delete"]
    if isinstance(node, ast.SelectStmt):
        kind = "select"
        parser.select(node, parent=None, ctes=frozenset())
    elif isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        kind = "update" if isinstance(node, ast.UpdateStmt) else "delete"
        if node.whereClause is None:
            raise UnusableQuery(f"{kind.upper()} without WHERE")
        parser.modify(node)
    else:
        raise UnusableQuery("not a SELECT, UPDATE or DELETE")
    scopes = [scope for scope in parser.scopes if scope.conditions or scope.sort]
    if not scopes:
        raise UnusableQuery("no column comparison or ORDER BY that an index could serve")
    params = max((n.number or 0 for n in _walk(node) if isinstance(n, ast.ParamRef)), default=0)
    return ParsedQuery(query=query, kind=kind, params=params, scopes=parser.scopes)


class _Parser:
    """Walk one statement, appending a :class:`Scope` per query level."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    def _scope(self, parent: int | None) -> int:
        self.scopes.append(Scope(parent=parent))
        return len(self.scopes) - 1

    def select(self, node: ast.SelectStmt, *, parent: int | None, ctes: frozenset[str]) -> None:
        ctes = self._with(node.withClause, parent, ctes)
        if node.op != enums.SetOperation.SETOP_NONE:
            for arm in (node.larg, node.rarg):
                if arm is not None:
                    self.select(arm, parent=parent, ctes=ctes)
            return
        index = self._scope(parent)
        scope = self.scopes[index]
        for item in node.fromClause or ():
            self._from(item, scope, index, ctes)
        self._conditions(node.whereClause, scope, index, ctes)
        for target in node.targetList or ():
            self._sublinks(target, index, ctes)
        for sort in node.sortClause or ():
            descending = sort.sortby_dir == enums.SortByDir.SORTBY_DESC
            if isinstance(sort.node, ast.ColumnRef) and _path(sort.node):
                scope.sort.append(SortKey(_path(sort.node), descending))
            elif (found := _expression(sort.node)) is not None:
                scope.sort.append(SortKey(found[0], descending, found[1]))
            else:  # an output position, or over several columns: no index gives that order
                scope.sort.clear()
                break
        scope.limited = node.limitCount is not None
        scope.reads = _reads(
            [node.targetList, node.whereClause, node.sortClause, node.groupClause,
             node.havingClause, node.fromClause]
        )  # fmt: skip

    def modify(self, node: ast.UpdateStmt | ast.DeleteStmt) -> None:
        ctes = self._with(node.withClause, None, frozenset())
        index = self._scope(None)
        scope = self.scopes[index]
        self._from(node.relation, scope, index, ctes)
        extra = node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause
        for item in extra or ():
            self._from(item, scope, index, ctes)
        self._conditions(node.whereClause, scope, index, ctes)

    def _with(
        self, clause: ast.WithClause | None, parent: int | None, ctes: frozenset[str]
    ) -> frozenset[str]:
        if clause is None:
            return ctes
        names = ctes | {cte.ctename or "" for cte in clause.ctes or ()}
        for cte in clause.ctes or ():
            if isinstance(cte.ctequery, ast.SelectStmt):
                self.select(cte.ctequery, parent=parent, ctes=names)
        return names

    def _from(self, item: Any, scope: Scope, index: int, ctes: frozenset[str]) -> None:
        if isinstance(item, ast.RangeVar):
            alias = item.alias.aliasname if item.alias else None
            name = item.relname or ""
            virtual = item.schemaname is None and name in ctes
            scope.tables.append(TableRef(item.schemaname, name, alias, virtual))
        elif isinstance(item, ast.JoinExpr):
            self._from(item.larg, scope, index, ctes)
            self._from(item.rarg, scope, index, ctes)
            self._conditions(item.quals, scope, index, ctes)
            self._using(item, scope)
        elif isinstance(item, ast.RangeSubselect):
            alias = (item.alias.aliasname if item.alias else None) or "?subquery"
            scope.tables.append(TableRef(None, alias, alias, virtual=True))
            if isinstance(item.subquery, ast.SelectStmt):
                self.select(item.subquery, parent=index, ctes=ctes)
        elif isinstance(item, ast.RangeFunction) and item.alias is not None:
            alias = item.alias.aliasname or "?function"
            scope.tables.append(TableRef(None, alias, alias, virtual=True))

    def _using(self, join: ast.JoinExpr, scope: Scope) -> None:
        left, right = _first_table(join.larg), _first_table(join.rarg)
        if left is None or right is None:
            return
        for name in join.usingClause or ():
            column = name.sval or ""
            scope.conditions.append(Condition((right, column), "eq", other=(left, column)))
            scope.conditions.append(Condition((left, column), "eq", other=(right, column)))

    def _conditions(self, node: Any, scope: Scope, index: int, ctes: frozenset[str]) -> None:
        if node is None:
            return
        if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
            for arg in node.args or ():
                self._conditions(arg, scope, index, ctes)
            return
        self._sublinks(node, index, ctes)
        if isinstance(node, ast.A_Expr):
            scope.conditions.extend(_comparison(node))

    def _sublinks(self, node: Any, index: int, ctes: frozenset[str]) -> None:
        for sublink in _walk(node, into=ast.SubLink):
            if isinstance(sublink.subselect, ast.SelectStmt):
                self.select(sublink.subselect, parent=index, ctes=ctes)


def _comparison(node: ast.A_Expr) -> list[Condition]:
    operator = node.name[-1].sval if node.name else ""
    kind = node.kind
    if kind == enums.A_Expr_Kind.AEXPR_OP and (operator == _EQUALITY or operator in _RANGE):
        cmp: Literal["eq", "range"] = "eq" if operator == _EQUALITY else "range"
        left, right = _path(node.lexpr), _path(node.rexpr)
        if left and right:
            return [Condition(left, cmp, other=right), Condition(right, cmp, other=left)]
        if left and _is_value(node.rexpr):
            return [Condition(left, cmp, constant=_constant(node.rexpr, cmp))]
        if right and _is_value(node.lexpr):
            return [Condition(right, cmp, constant=_constant(node.lexpr, cmp))]
        for side, value in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
            found = _expression(side)
            if found is not None and _is_value(value):
                return [Condition(found[0], cmp, expression=found[1])]
        return []
    if kind == enums.A_Expr_Kind.AEXPR_OP and operator in _SEARCH:
        # the indexed side is the left one: a column, or an expression such as to_tsvector
        column = _path(node.lexpr)
        if column and _is_value(node.rexpr):
            return [Condition(column, "search", operator=operator)]
        found = _expression(node.lexpr)
        if found is not None and _is_value(node.rexpr):
            return [Condition(found[0], "search", expression=found[1], operator=operator)]
        return []
    column = _path(node.lexpr)
    if not column:
        return []
    if kind == enums.A_Expr_Kind.AEXPR_IN and operator == _EQUALITY:
        values = node.rexpr if isinstance(node.rexpr, tuple | list) else ()
        if values and all(_is_value(value) for value in values):
            return [Condition(column, "eq")]
    elif kind == enums.A_Expr_Kind.AEXPR_OP_ANY and operator == _EQUALITY:
        if _is_value(node.rexpr):
            return [Condition(column, "eq")]
    elif kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_BETWEEN_SYM):
        bounds = node.rexpr if isinstance(node.rexpr, tuple | list) else ()
        if bounds and all(_is_value(bound) for bound in bounds):
            return [Condition(column, "range")]
    return []


def _path(node: Any) -> ColumnPath:
    """Return a plain column reference's names, or () for anything else."""
    if not isinstance(node, ast.ColumnRef):
        return ()
    fields = node.fields or ()
    names = tuple(f.sval for f in fields if isinstance(f, ast.String) and f.sval)
    return names if names and len(names) == len(fields) else ()


def _expression(node: Any) -> tuple[ColumnPath, Expression] | None:
    """Return the one column an expression reads and the expression, or None.

    Only function calls, field operators (``->>``), casts and constants over exactly one
    column count: anything else (a subquery, two columns, an aggregate) no index holds.
    """
    if not isinstance(node, ast.FuncCall | ast.A_Expr | ast.TypeCast):
        return None
    columns: set[ColumnPath] = set()
    calls: list[tuple[str, str, int, int]] = []
    for part in _walk(node):
        if isinstance(part, ast.ColumnRef):
            path = _path(part)
            if not path:
                return None
            columns.add(path)
        elif isinstance(part, ast.FuncCall):
            if part.agg_star or part.agg_distinct or part.over is not None:
                return None
            args = list(part.args or ())
            position = next((i for i, a in enumerate(args) if isinstance(a, ast.ColumnRef)), -1)
            name = part.funcname[-1].sval if part.funcname else ""
            calls.append(("f", name or "", len(args), position))
        elif isinstance(part, ast.A_Expr):
            operator = part.name[-1].sval if part.name else ""
            if part.kind != enums.A_Expr_Kind.AEXPR_OP or operator not in _FIELD_OPERATORS:
                return None
            calls.append(("o", operator, 2, 0))
        elif isinstance(part, ast.SubLink):
            return None
    if len(columns) != 1:
        return None
    (column,) = columns
    bare = copy.deepcopy(node)
    for part in _walk(bare):
        if isinstance(part, ast.ColumnRef):
            part.fields = (part.fields or ())[-1:]
    return column, Expression(str(RawStream()(bare)), tuple(calls))


def _reads(nodes: list[Any]) -> list[ColumnPath] | None:
    """Return the columns ``nodes`` read at this level (not in subqueries); None for ``*``."""
    found: dict[ColumnPath, None] = {}
    stack = list(nodes)
    while stack:
        current = stack.pop()
        if isinstance(current, tuple | list):
            stack.extend(current)
        elif isinstance(current, ast.SubLink | ast.RangeSubselect):
            continue
        elif isinstance(current, ast.ColumnRef):
            if any(isinstance(f, ast.A_Star) for f in current.fields or ()):
                return None
            if path := _path(current):
                found.setdefault(path)
        elif isinstance(current, ast.Node):
            for name in getattr(type(current), "__slots__", ()):
                value = getattr(current, name, None)
                if isinstance(value, ast.Node | tuple | list):
                    stack.append(value)
    return list(found)


def _is_value(node: Any) -> bool:
    """Return whether ``node`` is fixed for one execution: no column of this level in it."""
    return not any(isinstance(n, ast.ColumnRef | ast.SubLink) for n in _walk(node))


def _constant(node: Any, kind: str) -> str | None:
    """Return a literal as SQL, for an equality that can become an index predicate."""
    if kind != "eq":
        return None
    literal = node.arg if isinstance(node, ast.TypeCast) else node
    if isinstance(literal, ast.A_Const) and not literal.isnull:
        return str(RawStream()(node))
    return None


def _first_table(node: Any) -> str | None:
    if isinstance(node, ast.RangeVar):
        return node.alias.aliasname if node.alias else node.relname
    if isinstance(node, ast.JoinExpr):
        return _first_table(node.larg)
    return None


def _walk(node: Any, into: type[ast.Node] | None = None) -> Iterator[Any]:
    """Yield ``node`` and every node under it; with ``into``, only nodes of that type,
    without looking inside them."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, tuple | list):
            stack.extend(current)
            continue
        if not isinstance(current, ast.Node):
            continue
        if into is not None and isinstance(current, into):
            yield current
            continue
        if into is None:
            yield current
        for name in getattr(type(current), "__slots__", ()):
            value = getattr(current, name, None)
            if isinstance(value, ast.Node | tuple | list):
                stack.append(value)
