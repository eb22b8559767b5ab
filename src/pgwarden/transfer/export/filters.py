"""A small, safe filter language for choosing rows, compiled to SQLAlchemy with bound values.

``--where "status = 'published' and (views >= 100 or author_id in (1, 2)) and deleted_at
is null"`` is read by a tokenizer and a recursive-descent parser written here (not by
PostgreSQL's parser: what is not in this grammar cannot get through)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | predicate
    predicate  := column compare value
                | column ["not"] ("like" | "ilike") string
                | column ["not"] "in" "(" value ("," value)* ")"
                | column "is" ["not"] "null"
    compare    := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    column     := identifier | '"' quoted identifier ('""' for a quote) '"'
    value      := string ('' for a quote) | number | "true" | "false"

Keywords are case-insensitive; unquoted identifiers fold to lower case, as in SQL.
Columns are checked against the table; a comparison binds its value as a parameter cast
to the column's type (``"views" >= CAST(%(param_1)s AS integer)``), ``like`` compares the
column's text. The SQL holds only the table's own column and type names, never a piece
of the input. :func:`check_filter` then asks the server whether each value reads as its
column's type and the operator exists for it, so a bad value fails before any export
starts. Every mistake is a :class:`UserError` naming the token and its position.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import UserDefinedType

from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogTable

__all__ = [
    "Filter",
    "ValueCheck",
    "check_filter",
    "compile_filter",
    "date_range",
    "equals",
    "parse_where",
    "table_clause",
]

GRAMMAR_HINT = (
    "Write column operator value, joined by and/or/not and parentheses: "
    "status = 'published' and (views >= 100 or author_id in (1, 2)) and deleted_at is null. "
    "Operators: = != <> < <= > >= like ilike in, not in, is null, is not null."
)
MAX_LENGTH = 10_000
MAX_DEPTH = 64

_KEYWORDS = frozenset({"and", "or", "not", "like", "ilike", "in", "is", "null", "true", "false"})
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*')
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, keyword, string, number, op, punct, end
    text: str
    value: Any
    pos: int  # 1-based character position in the input


@dataclass(frozen=True)
class ValueCheck:
    """A value the server must read as a column's type, with the operator used on it."""

    column: str
    type: str
    operator: str
    value: str
    pos: int


@dataclass(frozen=True)
class Filter:
    """A compiled filter: the SQLAlchemy clause, and the values :func:`check_filter` checks."""

    source: str
    clause: sa.ColumnElement[bool]
    checks: tuple[ValueCheck, ...]


class _PgType(UserDefinedType[Any]):
    """A type named as the catalog prints it, for casts to a column's exact type."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


def table_clause(table: CatalogTable, *, alias: str | None = None) -> sa.TableClause:
    """Return a lightweight SQLAlchemy table for ``table``, with ``tableoid`` and ``ctid``."""
    clause = sa.table(
        table.name,
        sa.column("tableoid"),
        sa.column("ctid"),
        *(sa.column(name) for name in table.column_names),
        schema=table.schema,
    )
    return clause.alias(alias) if alias else clause  # type: ignore[return-value]


def parse_where(option: str) -> tuple[str | None, str]:
    """Split a ``--where`` option into the table it names (``table: expr``) and the expression."""
    match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?)\s*:(?!=)", option)
    if match:
        return match.group(1), option[match.end() :]
    return None, option


def compile_filter(source: str, table: CatalogTable, target: sa.TableClause) -> Filter:
    """Parse ``source`` and return its clause over ``target``'s columns, values bound.

    Raises :class:`UserError` for any syntax outside the grammar or a column ``table``
    does not have, naming the token and its 1-based position.
    """
    if len(source) > MAX_LENGTH:
        raise UserError(f"the filter is longer than {MAX_LENGTH} characters.", hint=GRAMMAR_HINT)
    parser = _Parser(source, _tokenize(source), table, target)
    clause = parser.expression(0)
    parser.expect_end()
    return Filter(source, clause, tuple(parser.checks))


def date_range(
    table: CatalogTable,
    target: sa.TableClause,
    column: str,
    *,
    since: str | None,
    until: str | None,
) -> Filter:
    """Return the filter ``since <= column < until`` (either bound may be left out)."""
    types = table.column_types
    if column not in types:
        raise UserError(
            f"{table.qualified} has no column {column!r} for the date range.",
            hint=f"Its columns: {', '.join(table.column_names)}.",
        )
    parts: list[sa.ColumnElement[bool]] = []
    checks: list[ValueCheck] = []
    for operator, value in ((">=", since), ("<", until)):
        if value is not None:
            bound = sa.cast(sa.bindparam(None, value, type_=sa.Text()), _PgType(types[column]))
            parts.append(target.c[column].op(operator, is_comparison=True)(bound))
            checks.append(ValueCheck(column, types[column], operator, value, 0))
    clause = sa.and_(*parts) if parts else sa.true()
    return Filter(f"{since} <= {column} < {until}", clause, tuple(checks))


def equals(table: CatalogTable, target: sa.TableClause, column: str, value: str) -> Filter:
    """Return the filter ``column = value``, the value bound and cast to the column's type."""
    column_type = table.column_types[column]
    bound = sa.cast(sa.bindparam(None, value, type_=sa.Text()), _PgType(column_type))
    clause = target.c[column].op("=", is_comparison=True)(bound)
    return Filter(
        f"{column} = {value!r}", clause, (ValueCheck(column, column_type, "=", value, 0),)
    )


def check_filter(conn: Connection, filters: Sequence[Filter]) -> None:
    """Ask the server whether each value reads as its column's type, in a savepoint each.

    Runs ``SELECT CAST(:value AS type) <op> CAST(:value AS type)`` per value, a
    parameterized SELECT that touches no table. Raises :class:`UserError` naming the value.
    """
    for item in filters:
        for check in item.checks:
            typed = sa.cast(sa.bindparam("value", type_=sa.Text()), _PgType(check.type))
            probe = sa.select(typed.op(check.operator, is_comparison=True)(typed))
            try:
                with conn.begin_nested():
                    conn.execute(probe, {"value": check.value})
            except DBAPIError as exc:
                detail = str(exc.orig or exc).strip().splitlines()[0]
                where = f" at position {check.pos}" if check.pos else ""
                raise UserError(
                    f"the value {check.value!r}{where} does not fit column {check.column!r}"
                    f" ({check.type}) with {check.operator}: {detail}",
                    hint="Write the value as PostgreSQL reads that type, in single quotes.",
                ) from exc


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    if "\x00" in source:
        raise _error(source, source.index("\x00") + 1, "a NUL character, which no value can hold")
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            what = {"'": "unterminated string", '"': "unterminated quoted identifier"}
            message = what.get(source[pos], f"unexpected character {source[pos]!r}")
            raise _error(source, pos + 1, message)
        kind, text = match.lastgroup or "", match.group()
        if kind == "ident" and text.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", text, text.lower(), pos + 1))
        elif kind == "ident":
            tokens.append(_Token("ident", text, text.lower(), pos + 1))
        elif kind == "quoted":
            name = text[1:-1].replace('""', '"')
            if not name:
                raise _error(source, pos + 1, "empty quoted identifier")
            tokens.append(_Token("ident", text, name, pos + 1))
        elif kind == "string":
            tokens.append(_Token("string", text, text[1:-1].replace("''", "'"), pos + 1))
        elif kind == "number":
            try:
                Decimal(text)
            except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
                raise _error(source, pos + 1, f"bad number {text!r}") from None
            tokens.append(_Token("number", text, text, pos + 1))
        elif kind in ("op", "punct"):
            tokens.append(_Token(kind, text, text, pos + 1))
        elif kind != "space":  # pragma: no cover - every group is handled above
            raise _error(source, pos + 1, f"unexpected {text!r}")
        pos = match.end()
    tokens.append(_Token("end", "", None, len(source) + 1))
    return tokens


def _error(source: str, pos: int, message: str) -> UserError:
    near = source[max(pos - 1, 0) : pos + 19]
    where = f" near {near!r}" if near else ""
    return UserError(f"filter: {message} at position {pos}{where}.", hint=GRAMMAR_HINT)


class _Parser:
    def __init__(
        self, source: str, tokens: list[_Token], table: CatalogTable, target: sa.TableClause
    ) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.table = table
        self.types = table.column_types
        self.target = target
        self.checks: list[ValueCheck] = []

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def fail(self, message: str, token: _Token | None = None) -> UserError:
        token = token or self.token
        return _error(self.source, token.pos, message)

    def unexpected(self, wanted: str) -> UserError:
        token = self.token
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        return self.fail(f"expected {wanted}, found {found}")

    def accept(self, kind: str, value: str | None = None) -> _Token | None:
        token = self.token
        if token.kind == kind and (value is None or token.value == value):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, value: str, wanted: str) -> _Token:
        token = self.accept(kind, value)
        if token is None:
            raise self.unexpected(wanted)
        return token

    def expect_end(self) -> None:
        if self.token.kind != "end":
            raise self.unexpected("and, or, or the end of the filter")

    def expression(self, depth: int) -> sa.ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        items = [self.conjunction(depth)]
        while self.accept("keyword", "or"):
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else sa.or_(*items)

    def conjunction(self, depth: int) -> sa.ColumnElement[bool]:
        items = [self.negation(depth)]
        while self.accept("keyword", "and"):
            items.append(self.negation(depth))
        return items[0] if len(items) == 1 else sa.and_(*items)

    def negation(self, depth: int) -> sa.ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        if self.accept("keyword", "not"):
            return sa.not_(self.negation(depth + 1))
        if self.accept("punct", "("):
            inner = self.expression(depth + 1)
            self.expect("punct", ")", "')'")
            return inner
        return self.predicate()

    def predicate(self) -> sa.ColumnElement[bool]:
        token = self.token
        if token.kind != "ident":
            raise self.unexpected("a column name")
        self.index += 1
        name = str(token.value)
        if name not in self.types:
            raise self.fail(
                f"unknown column {token.text!r} of {self.table.qualified}"
                f" (its columns: {', '.join(self.table.column_names)})",
                token,
            )
        column = self.target.c[name]
        if op := self.accept("op"):
            return column.op(_sql_operator(op.text), is_comparison=True)(
                self.value(name, _sql_operator(op.text))
            )
        if self.accept("keyword", "is"):
            negated = self.accept("keyword", "not") is not None
            self.expect("keyword", "null", "null")
            return column.is_not(None) if negated else column.is_(None)
        negated = self.accept("keyword", "not") is not None
        if word := self.accept("keyword", "like") or self.accept("keyword", "ilike"):
            pattern = self.accept("string")
            if pattern is None:
                raise self.unexpected(f"a quoted pattern after {word.text}")
            text = sa.cast(column, sa.Text())
            bound = sa.bindparam(None, str(pattern.value), type_=sa.Text())
            # A pattern can be malformed too (a trailing backslash): the server checks it.
            operator = str(word.value).upper()
            self.checks.append(ValueCheck(name, "text", operator, str(pattern.value), pattern.pos))
            clause = text.ilike(bound) if word.value == "ilike" else text.like(bound)
            return sa.not_(clause) if negated else clause
        if self.accept("keyword", "in"):
            self.expect("punct", "(", "'(' after in")
            values = [self.value(name, "=")]
            while self.accept("punct", ","):
                values.append(self.value(name, "="))
            self.expect("punct", ")", "')' or ','")
            return column.not_in(values) if negated else column.in_(values)
        wanted = "like, ilike or in after not" if negated else "an operator"
        raise self.unexpected(wanted)

    def value(self, column: str, operator: str) -> sa.ColumnElement[Any]:
        token = self.token
        if token.kind in ("string", "number") or (
            token.kind == "keyword" and token.value in ("true", "false")
        ):
            self.index += 1
            text = str(token.value)
            self.checks.append(ValueCheck(column, self.types[column], operator, text, token.pos))
            bound = sa.bindparam(None, text, type_=sa.Text())
            return sa.cast(bound, _PgType(self.types[column]))
        if token.kind == "keyword" and token.value == "null":
            raise self.fail("null compares to nothing; write `is null` or `is not null`")
        raise self.unexpected("a value (a 'string', a number, true or false)")


def _sql_operator(text: str) -> str:
    return "<>" if text == "!=" else text
