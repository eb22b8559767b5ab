"""Search text columns with PostgreSQL full-text search: a generated tsvector, a GIN index.

The vector is a stored generated column, so the database keeps it in step with the text
on every write, and a GIN index makes ``@@`` fast::

    class Content(IdPrimaryKey, Base):
        __tablename__ = "content"
        __table_args__ = (gin_index("ix_content_search", "search_vector"),)
        title: Mapped[str]
        body: Mapped[str]
        search_vector: Mapped[str] = tsvector_column(("title", "A"), ("body", "B"))

    stmt = search(select(Content), Content.search_vector, "postgres -mysql")
    for content, rank in session.execute(stmt):
        ...

Queries use ``websearch_to_tsquery`` (the syntax of a web search box: words, "quoted
phrases", ``or``, ``-not``) and the user's text is always a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Computed, Float, Index, Text, bindparam, cast, false, func, literal
from sqlalchemy.dialects.postgresql import REGCONFIG, TSVECTOR
from sqlalchemy.orm import MappedColumn, QueryableAttribute, mapped_column
from sqlalchemy.sql import ColumnElement, Select

from pgwarden._sql import quote_identifier
from pgwarden.errors import UserError

__all__ = ["gin_index", "search", "tsvector_column"]

_CONFIG = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_WEIGHTS = frozenset("ABCD")


def _check_config(config: str) -> str:
    if not isinstance(config, str) or not _CONFIG.match(config):
        raise UserError(
            f"{config!r} is not a text search configuration name.",
            hint="Use a name such as english or simple (see \\dF in psql).",
        )
    return config


def tsvector_column(*weighted: tuple[str, str], config: str = "english") -> MappedColumn[Any]:
    """Return a stored generated ``tsvector`` column over the weighted text columns.

    ``tsvector_column(("title", "A"), ("body", "B"))`` makes
    ``setweight(to_tsvector('english', coalesce(title, '')), 'A') || ...``: a match in
    the title ranks above one in the body. Weights are A (highest) to D. The column
    names are the table's (not the attributes'), any legal name, quoted as needed. The
    column is deferred: it is not loaded with the row, as only the database needs it.
    """
    if not weighted:
        raise UserError("a search vector needs at least one column.")
    _check_config(config)
    parts = []
    for column, weight in weighted:
        if not isinstance(column, str) or not column or "\x00" in column:
            raise UserError(
                f"{column!r} is not a column name.", hint="Name a text column of the table."
            )
        if weight not in _WEIGHTS:
            raise UserError(f"{weight!r} is not a weight.", hint="Use A, B, C or D.")
        quoted = quote_identifier(column)
        parts.append(f"setweight(to_tsvector('{config}', coalesce({quoted}, '')), '{weight}')")
    return mapped_column(TSVECTOR, Computed(" || ".join(parts), persisted=True), deferred=True)


def gin_index(name: str, column: str) -> Index:
    """Return a GIN index on ``column``, for ``__table_args__``."""
    return Index(name, column, postgresql_using="gin")


def search(
    stmt: Select[*tuple[Any, ...]],
    vector: ColumnElement[Any] | QueryableAttribute[Any],
    query: str,
    *,
    config: str = "english",
    rank_label: str = "rank",
) -> Select[*tuple[Any, ...]]:
    """Return ``stmt`` filtered to rows whose ``vector`` matches ``query``, best first.

    The rank (``ts_rank_cd``) is added as a column named ``rank_label`` and the rows are
    ordered by it, descending, after any ordering ``stmt`` already has (so add
    tie-breakers after calling this). A blank query matches nothing. ``query`` is bound
    as a parameter, so any text is safe; text that is not a valid query matches nothing
    rather than failing.
    """
    tsquery = func.websearch_to_tsquery(
        cast(literal(_check_config(config)), REGCONFIG), bindparam(None, query, type_=Text)
    )
    rank = func.ts_rank_cd(vector, tsquery, type_=Float).label(rank_label)
    found = stmt.add_columns(rank).where(vector.op("@@")(tsquery)).order_by(rank.desc())
    return found if query.strip() else found.where(false())
