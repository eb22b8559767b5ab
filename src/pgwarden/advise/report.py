"""What the index advisor reports, and the migration that applies it.

An :class:`IndexAdvice` holds the recommended indexes, each with the queries it serves
(cost before and after, as the planner estimates them), its estimated size and the SQL
that builds it without blocking writes. :func:`alembic_migration` writes the same
indexes as the body of an Alembic migration file.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgwarden._sql import qualified, quote_identifier
from pgwarden.advise.candidates import Candidate, IndexKey
from pgwarden.advise.catalog import QueriedTable
from pgwarden.advise.queries import SkippedQuery
from pgwarden.advise.scratch import SampledTable

__all__ = [
    "IndexAdvice",
    "IndexRecommendation",
    "SampledTable",
    "ServedQuery",
    "alembic_migration",
    "estimate_size",
    "index_name",
    "truncated_name",
]

_PAGE = 8192
_MAX_NAME = 63  # NAMEDATALEN - 1


@dataclass(frozen=True)
class ServedQuery:
    """A query a recommended index serves: its planner cost without and with it."""

    sql: str
    calls: int | None
    cost_before: float
    cost_after: float

    @property
    def factor(self) -> float:
        """Return how many times cheaper the index makes the query."""
        return self.cost_before / max(self.cost_after, 0.01)


@dataclass(frozen=True)
class IndexRecommendation:
    """One index to create, what it serves and what it costs."""

    schema: str
    table: str
    name: str
    keys: list[IndexKey]
    predicate: str | None
    queries: list[ServedQuery]
    size_bytes: int
    size_source: str  # "hypopg", or "statistics" (table rows times key widths)
    write_heavy: bool
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Return the key columns' names."""
        return [key.column for key in self.keys]

    @property
    def create_sql(self) -> str:
        """Return the statement that builds the index without blocking writes."""
        keys = ", ".join(key.sql for key in self.keys)
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return (
            f"CREATE INDEX CONCURRENTLY {quote_identifier(self.name, plain=True)} ON "
            f"{qualified(self.schema, self.table, plain=True)} ({keys}){where};"
        )

    @property
    def drop_sql(self) -> str:
        """Return the statement that drops the index again."""
        return f"DROP INDEX CONCURRENTLY {qualified(self.schema, self.name, plain=True)};"


@dataclass(frozen=True)
class IndexAdvice:
    """The advisor's result.

    ``method`` is how candidates were tried: ``"hypopg"`` or ``"scratch copy"`` (or
    ``None`` when no query had a candidate worth trying); ``method_reason`` says why.
    ``sampled_tables`` lists the scratch copy's tables holding only part of their rows.
    """

    method: str | None
    method_reason: str
    recommendations: list[IndexRecommendation]
    queries_analyzed: int
    candidates_tried: int
    skipped: list[SkippedQuery]
    sampled_tables: list[SampledTable]
    notes: list[str]
    alembic_revision: str | None = None  # the database's current Alembic head, if any


def alembic_migration(
    recommendations: list[IndexRecommendation],
    *,
    down_revision: str | None = None,
    revision: str | None = None,
) -> str:
    """Return the body of an Alembic migration that creates the recommended indexes.

    The indexes are built with ``CREATE INDEX CONCURRENTLY``, which cannot run inside a
    transaction, so they sit in ``op.get_context().autocommit_block()``. The downgrade
    drops them the same way.
    """
    revision = revision or secrets.token_hex(6)
    upgrade, downgrade = [], []
    for index in recommendations:
        schema = f"\n            schema={_py(index.schema)}," if index.schema != "public" else ""
        where = (
            f"\n            postgresql_where=sa.text({_py(index.predicate)}),"
            if index.predicate
            else ""
        )
        columns = ", ".join(
            f"sa.text({_py(key.sql)})" if key.descending else _py(key.column) for key in index.keys
        )
        upgrade.append(
            f"        op.create_index(\n"
            f"            {_py(index.name)},\n"
            f"            {_py(index.table)},\n"
            f"            [{columns}],{schema}{where}\n"
            f"            postgresql_concurrently=True,\n"
            f"        )"
        )
        downgrade.append(
            f"        op.drop_index(\n"
            f"            {_py(index.name)},\n"
            f"            table_name={_py(index.table)},{schema}\n"
            f"            postgresql_concurrently=True,\n"
            f"        )"
        )
    # Quoted as Python literals: a name is any text, and the docstring is Python too.
    names = "".join(f"- {_py(index.name)}\n" for index in recommendations) or "- none\n"
    return (
        '"""Add the indexes recommended by pgwarden advise indexes.\n\n'
        f"{names}\n"
        f"Revision ID: {revision}\n"
        f"Revises: {down_revision or ''}\n"
        '"""\n\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {_py(revision)}\n"
        f"down_revision = {_py(down_revision) if down_revision else None}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.\n"
        "    with op.get_context().autocommit_block():\n"
        f"{_body(upgrade)}\n\n\n"
        "def downgrade() -> None:\n"
        "    with op.get_context().autocommit_block():\n"
        f"{_body(list(reversed(downgrade)))}\n"
    )


def _body(statements: list[str]) -> str:
    return "\n".join(statements) if statements else "        pass"


def _py(value: str) -> str:
    """Return ``value`` as a Python string literal."""
    return json.dumps(value, ensure_ascii=False)


def estimate_size(table: QueriedTable, keys: Sequence[IndexKey], fraction: float = 1.0) -> int:
    """Estimate a B-tree's size in bytes from the table's rows and the keys' widths.

    ``fraction`` is the share of rows a partial index holds. Each leaf entry is an
    8-byte header and the keys, aligned to 8 bytes, plus a 4-byte line pointer; leaf
    pages are filled to 90% (the default fillfactor); inner pages and the metapage add
    a little.
    """
    rows = max(table.reltuples, 0.0) * fraction
    width = sum(table.columns.get(key.column, 8) for key in keys)
    entry = 8 + math.ceil(width / 8) * 8 + 4
    usable = (_PAGE - 24 - 16) * 0.9
    leaves = math.ceil(rows * entry / usable)
    inner = math.ceil(leaves / 250)
    return (1 + max(1, leaves + inner)) * _PAGE


def index_name(candidate: Candidate) -> str:
    """Return ``ix_<table>_<columns>`` (``_where_<columns>`` for a partial index)."""
    parts = ["ix", candidate.table, *candidate.columns]
    if candidate.predicate_columns:
        parts += ["where", *candidate.predicate_columns]
    return truncated_name("_".join(parts))


def truncated_name(name: str, *, suffix: str = "") -> str:
    """Return ``name`` + ``suffix`` cut to PostgreSQL's 63 bytes, keeping the suffix."""
    room = _MAX_NAME - len(suffix.encode())
    return name.encode()[:room].decode(errors="ignore") + suffix
