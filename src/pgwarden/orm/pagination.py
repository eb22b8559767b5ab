"""Page through any ordered SELECT: by keyset with signed cursors, or by offset with a
total that the planner estimates when counting would cost too much.

Keyset pagination::

    stmt = select(Content).order_by(Content.published_at.desc().nulls_last())
    page = keyset_page(session, stmt, secret=settings.cursor_secret, per_page=20)
    more = keyset_page(session, stmt, secret=..., after=page.next_cursor)
    back = keyset_page(session, stmt, secret=..., before=more.previous_cursor)

The ordering is the statement's own ORDER BY, any mix of ASC and DESC, NULLS FIRST or
LAST (PostgreSQL's defaults when not said: NULLS LAST for ASC, FIRST for DESC). When it
is not unique, the primary key of the statement's first entity or table is appended as
the tie-breaker, so every row has one place. A page is found with a WHERE on the
ordering values of the row the cursor names (an index on the ordering serves it), never
with OFFSET. Cursors are HMAC-signed with the caller's secret and bound to the
ordering: a changed, foreign or cut cursor raises :class:`InvalidCursor`.

Offset pagination: :func:`offset_page` returns the page and a total, exact below
``exact_below`` rows and the planner's estimate (``EXPLAIN``) above, saying which.

Both take a ``Session`` or a ``Connection``; async code calls them through
``await session.run_sync(keyset_page, stmt, ...)``. FastAPI dependencies for the query
parameters are in :mod:`pgwarden.orm.pagination_fastapi`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, inspect, or_, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, Label, UnaryExpression
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.selectable import Join
from sqlalchemy.types import Enum as EnumType

from pgwarden.orm._cursors import Cursor, check_secret, decode_cursor, encode_cursor
from pgwarden.orm.errors import InvalidCursor, UnpageableQuery

__all__ = ["KeysetPage", "OffsetPage", "PageKey", "keyset_page", "offset_page", "page_keys"]

_KEY_LABEL = "_pgwarden_page_key"


@dataclass(frozen=True)
class PageKey:
    """One expression of a keyset ordering, with its direction and place of NULLs."""

    expression: ColumnElement[Any]
    descending: bool
    nulls_first: bool

    def flipped(self) -> PageKey:
        """Return the key that sorts the other way, NULLs at the other end."""
        return PageKey(self.expression, not self.descending, not self.nulls_first)

    def clause(self) -> ColumnElement[Any]:
        """Return the ORDER BY clause of this key, NULLs placed explicitly."""
        ordered = self.expression.desc() if self.descending else self.expression.asc()
        return ordered.nulls_first() if self.nulls_first else ordered.nulls_last()

    def equal(self, value: Any) -> ColumnElement[bool]:
        """Return the condition of a row whose key equals ``value`` (NULL included)."""
        return self.expression.is_(None) if value is None else self.expression == value

    def later(self, value: Any) -> ColumnElement[bool] | None:
        """Return the condition of a row sorted strictly after ``value``; ``None`` if
        no row can be."""
        if value is None:
            return self.expression.is_not(None) if self.nulls_first else None
        beyond = self.expression < value if self.descending else self.expression > value
        return beyond if self.nulls_first else or_(beyond, self.expression.is_(None))


@dataclass(frozen=True)
class KeysetPage:
    """A page of a keyset listing and the cursors to its neighbours (``None``: none)."""

    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    per_page: int


@dataclass(frozen=True)
class OffsetPage:
    """A page of an offset listing, with the listing's total row count.

    ``total_is_estimate`` tells whether ``total`` is the planner's estimate (above the
    threshold) or an exact ``count(*)``.
    """

    items: list[Any]
    page: int
    per_page: int
    total: int
    total_is_estimate: bool

    @property
    def pages(self) -> int:
        """Return how many pages ``total`` rows make (at least one)."""
        return max(1, -(-self.total // self.per_page))


def _unwrap(clause: Any) -> PageKey:
    descending: bool | None = None
    nulls_first: bool | None = None
    while True:
        if getattr(clause, "__visit_name__", None) == "label_reference" or isinstance(
            clause, Label
        ):  # ORDER BY a Label object: page on what it labels
            clause = clause.element
        elif isinstance(clause, UnaryExpression) and clause.modifier in (
            operators.nulls_first_op,
            operators.nulls_last_op,
        ):
            nulls_first = clause.modifier is operators.nulls_first_op
            clause = clause.element
        elif isinstance(clause, UnaryExpression) and clause.modifier in (
            operators.desc_op,
            operators.asc_op,
        ):
            descending = clause.modifier is operators.desc_op
            clause = clause.element
        else:
            break
    descending = bool(descending)
    return PageKey(clause, descending, descending if nulls_first is None else nulls_first)


def _primary_key(statement: Select[Any]) -> list[ColumnElement[Any]]:
    descriptions = statement.column_descriptions
    entity = descriptions[0].get("entity") if descriptions else None
    if entity is not None:
        return list(inspect(entity).primary_key)
    froms = statement.get_final_froms()
    table = froms[0] if len(froms) == 1 else None
    return list(getattr(table, "primary_key", ()) or ())


def page_keys(statement: Select[Any], *, unique: bool = False) -> list[PageKey]:
    """Return the keyset ordering of ``statement``: its ORDER BY, then its primary key
    as the tie-breaker unless ``unique`` says the ORDER BY already is one."""
    clauses = list(statement._order_by_clauses)
    if not clauses:
        raise UnpageableQuery(
            "the query has no ORDER BY, so its pages have no order to follow.",
            hint="Add .order_by(...) to the query, ending with a unique column.",
        )
    keys = [_unwrap(clause) for clause in clauses]
    for key in keys:
        if not isinstance(key.expression, ColumnElement) or key.expression.__visit_name__ in (
            "textual_label_reference",
            "textclause",
        ):
            raise UnpageableQuery(
                f"the query orders by {key.expression!r}, a name or text rather than an "
                "expression, whose values a cursor cannot be built from.",
                hint="Order by the column or labelled expression itself, not its name.",
            )
    if not unique:
        primary = _primary_key(statement)
        if not primary:
            raise UnpageableQuery(
                "the query's ORDER BY may not be unique and it has no primary key to add "
                "as a tie-breaker.",
                hint="End the ORDER BY with a unique column and pass unique=True.",
            )
        keys += [
            PageKey(column, False, False)
            for column in primary
            if not any(key.expression.compare(column) for key in keys)
        ]
    return keys


def _fingerprint(keys: Sequence[PageKey]) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    text = json.dumps(
        [[str(k.expression.compile(dialect=dialect)), k.descending, k.nulls_first] for k in keys]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _enum_class(key: PageKey) -> type[enum.Enum] | None:
    kind = getattr(key.expression, "type", None)
    return kind.enum_class if isinstance(kind, EnumType) else None


def _outer_joined(statement: Select[Any]) -> bool:
    """Say whether ``statement`` reads any table through an outer join."""
    for source in statement.get_final_froms():
        for node in visitors.iterate(source):
            if isinstance(node, Join) and (node.isouter or node.full):
                return True
    return False


def _seek(keys: Sequence[PageKey], values: Sequence[Any], *, outer: bool) -> ColumnElement[bool]:
    """Return the condition of rows sorted strictly after ``values`` under ``keys``.

    ``outer`` says the statement has outer joins, where a NOT NULL column can be NULL.
    """
    directions = {key.descending for key in keys}
    if (
        len(directions) == 1
        and not outer
        and None not in values
        and all(getattr(k.expression, "nullable", True) is False for k in keys)
    ):  # one row comparison, which a multicolumn index answers directly
        row = tuple_(*(k.expression for k in keys))
        return row < tuple_(*values) if keys[0].descending else row > tuple_(*values)
    terms = []
    for i, key in enumerate(keys):
        later = key.later(values[i])
        if later is not None:
            terms.append(and_(*(keys[j].equal(values[j]) for j in range(i)), later))
    return or_(*terms) if terms else false()


def _rows(executor: Session | Connection, statement: Any, width: int) -> list[Any]:
    result = executor.execute(statement)
    return list(result.scalars()) if width == 1 else [tuple(row) for row in result]


def keyset_page(
    executor: Session | Connection,
    statement: Select[Any],
    *,
    secret: str | bytes,
    per_page: int = 20,
    after: str | None = None,
    before: str | None = None,
    unique: bool = False,
) -> KeysetPage:
    """Return the page of ``statement`` after the cursor ``after``, before the cursor
    ``before``, or the first page when neither is given.

    Items are what the statement selects (entities or rows, as ``scalars()`` or tuples
    would give them), in its order. ``next_cursor`` is ``None`` on the last page and
    ``previous_cursor`` on the first. ``secret`` (16 bytes or more) signs the cursors.
    """
    key = check_secret(secret)
    if after is not None and before is not None:
        raise UnpageableQuery(
            "both 'after' and 'before' cursors were given; a page is found from one.",
            hint="Pass the next page's cursor as 'after' or the previous one as 'before'.",
        )
    if per_page < 1:
        raise UnpageableQuery(f"per_page must be 1 or more, not {per_page}.", hint="Try 20.")
    if statement._limit_clause is not None or statement._offset_clause is not None:
        raise UnpageableQuery(
            "the query has a LIMIT or OFFSET of its own, which paging would override.",
            hint="Remove .limit()/.offset() from the query and pass per_page.",
        )
    keys = page_keys(statement, unique=unique)
    ordering = _fingerprint(keys)
    text = after if after is not None else before
    cursor = None
    if text is not None:
        cursor = decode_cursor(key, text, enum_classes=[_enum_class(k) for k in keys])
        if cursor.ordering != ordering or len(cursor.values) != len(keys):
            raise InvalidCursor(
                "this page cursor was made for a listing with another ordering.",
                hint="Pass each listing its own cursors; start again from the first page.",
            )
        if cursor.backwards != (before is not None):
            raise InvalidCursor(
                f"this cursor pages {'backwards' if cursor.backwards else 'forwards'}; "
                f"it was passed as '{'after' if before is None else 'before'}'.",
                hint="Pass next_cursor as 'after' and previous_cursor as 'before'.",
            )
    backwards = before is not None
    walk = [k.flipped() for k in keys] if backwards else keys
    width = len(statement.column_descriptions)
    query = statement.order_by(None).add_columns(
        *(k.expression.label(f"{_KEY_LABEL}{i}") for i, k in enumerate(keys))
    )
    if cursor is not None:
        query = query.where(_seek(walk, cursor.values, outer=_outer_joined(statement)))
    query = query.order_by(*(k.clause() for k in walk)).limit(per_page + 1)
    rows = _rows(executor, query, 0)
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()

    def mark(row: tuple[Any, ...], backwards: bool) -> str:
        return encode_cursor(key, Cursor(backwards, ordering, tuple(row[width:])))

    has_next = more if not backwards else True
    has_previous = more if backwards else cursor is not None
    return KeysetPage(
        items=[row[0] if width == 1 else tuple(row[:width]) for row in rows],
        next_cursor=mark(rows[-1], False) if rows and has_next else None,
        previous_cursor=mark(rows[0], True) if rows and has_previous else None,
        per_page=per_page,
    )


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON)`` of a statement, with its bound parameters."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def estimated_rows(executor: Session | Connection, statement: Select[Any]) -> int:
    """Return the planner's estimate of the rows ``statement`` returns (no rows are read)."""
    plan = executor.execute(_Explain(statement)).scalar_one()
    if isinstance(plan, str | bytes):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def offset_page(
    executor: Session | Connection,
    statement: Select[Any],
    *,
    page: int = 1,
    per_page: int = 20,
    exact_below: int = 10_000,
) -> OffsetPage:
    """Return page ``page`` (from 1) of ``statement`` and the listing's total.

    The total is ``count(*)`` when the planner expects fewer than ``exact_below`` rows,
    else the planner's estimate (``total_is_estimate``): counting millions of rows for
    a page footer costs more than the page. Run ``ANALYZE`` for good estimates.
    """
    if page < 1 or per_page < 1:
        raise UnpageableQuery(
            f"page and per_page start at 1 (got page={page}, per_page={per_page}).",
            hint="Ask for page=1 first.",
        )
    whole = statement.order_by(None).limit(None).offset(None)
    estimate = estimated_rows(executor, whole)
    if estimate >= exact_below:
        total, estimated = estimate, True
    else:
        counting = select(func.count()).select_from(whole.subquery())
        total, estimated = int(executor.execute(counting).scalar_one()), False
    width = len(statement.column_descriptions)
    rows = _rows(executor, statement.limit(per_page).offset((page - 1) * per_page), width)
    return OffsetPage(rows, page, per_page, total, estimated)
