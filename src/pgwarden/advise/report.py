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

from pgwarden._sql import qualified
from pgwarden.advise.candidates import Candidate, IndexKey
from pgwarden.advise.catalog import QueriedTable
from pgwarden.advise.queries import SkippedQuery
from pgwarden.advise.scratch import SampledTable

__all__ = [
    "IndexAdvice",
    "IndexRecommendation",
    "PartitionIndex",
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
class PartitionIndex:
    """The index a recommendation puts on one partition of a partitioned table.

    ``parent`` is the index it is attached to, schema-qualified and quoted (None when
    the partition alone gets one); ``partitioned`` partitions (a level of
    sub-partitions) get ``ON ONLY`` too.
    """

    schema: str
    table: str
    name: str
    parent: str | None
    partitioned: bool = False


@dataclass(frozen=True)
class IndexRecommendation:
    """One index to create, what it serves and what it costs.

    On a partitioned table, ``partitions`` lists the index of each partition: built
    ``CONCURRENTLY`` one by one and attached to the parent's index, created ``ON
    ONLY`` the parent first (``CONCURRENTLY`` is not allowed on a partitioned table).
    ``on_parent`` is false when only some partitions need it: then each of those gets
    its own index and the parent none. ``replaces`` names existing indexes the new one
    makes redundant (a prefix of its keys), which could be dropped after it is built.
    """

    schema: str
    table: str
    name: str
    keys: list[IndexKey]
    predicate: str | None
    queries: list[ServedQuery]
    size_bytes: int
    size_source: str  # "hypopg", "built" (on the scratch copy), or "statistics"
    write_heavy: bool
    notes: list[str] = field(default_factory=list)
    using: str = "btree"
    pages_per_range: int | None = None  # a BRIN index's block range, when not the default
    include: list[str] = field(default_factory=list)  # INCLUDE columns
    partitions: list[PartitionIndex] = field(default_factory=list)
    on_parent: bool = True
    replaces: list[str] = field(default_factory=list)
    writes: int = 0  # rows inserted, updated or deleted in the table, from its statistics

    @property
    def columns(self) -> list[str]:
        """Return the key columns' names."""
        return [key.column for key in self.keys]

    @property
    def candidate(self) -> Candidate:
        """Return the index as a :class:`Candidate`, which writes its definition."""
        return Candidate(
            0,
            self.schema,
            self.table,
            tuple(self.keys),
            self.predicate,
            using=self.using,
            pages_per_range=self.pages_per_range,
            include=tuple(self.include),
        )

    @property
    def statements(self) -> list[str]:
        """Return the statements that build the index without blocking writes, in order.

        One ``CREATE INDEX CONCURRENTLY`` for a plain table. For a partitioned one:
        ``CREATE INDEX ... ON ONLY`` the parent (and each sub-partitioned partition),
        then each partition's index ``CONCURRENTLY``, then ``ALTER INDEX ... ATTACH
        PARTITION``, deepest first, which makes the parent's index valid.
        """
        index = self.candidate
        if not self.partitions:
            return [index.definition(self.name, concurrently=True)]
        made = []
        if self.on_parent:
            made.append(index.definition(self.name, only=True))
        for part in self.partitions:
            target = qualified(part.schema, part.table, plain=True)
            if part.partitioned:
                made.append(index.definition(part.name, only=True, table=target))
        for part in self.partitions:
            target = qualified(part.schema, part.table, plain=True)
            if not part.partitioned:
                made.append(index.definition(part.name, concurrently=True, table=target))
        for part in reversed(self.partitions):
            if part.parent is not None:
                made.append(
                    f"ALTER INDEX {part.parent}"
                    f" ATTACH PARTITION {qualified(part.schema, part.name, plain=True)}"
                )
        return made

    @property
    def create_sql(self) -> str:
        """Return the SQL that builds the index without blocking writes, one statement a line."""
        return "\n".join(f"{statement};" for statement in self.statements)

    @property
    def drop_statements(self) -> list[str]:
        """Return the statements that drop the index again."""
        if self.partitions and self.on_parent:
            # a partitioned index cannot be dropped concurrently; its partitions' go with it
            return [f"DROP INDEX {qualified(self.schema, self.name, plain=True)}"]
        if self.partitions:
            return [
                f"DROP INDEX CONCURRENTLY {qualified(p.schema, p.name, plain=True)}"
                for p in self.partitions
                if not p.partitioned
            ]
        return [f"DROP INDEX CONCURRENTLY {qualified(self.schema, self.name, plain=True)}"]

    @property
    def drop_sql(self) -> str:
        """Return the SQL that drops the index again."""
        return "\n".join(f"{statement};" for statement in self.drop_statements)


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
    unserved: list[SkippedQuery] = field(default_factory=list)  # analysed, no index won


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
    upgrade: list[str] = []
    downgrade: list[str] = []
    for index in recommendations:
        if index.partitions:
            # the ON ONLY / CONCURRENTLY / ATTACH sequence has no op.create_index form;
            # the driver runs each statement as written (no bind parameters in it)
            upgrade.extend(_raw(statement) for statement in index.statements)
            downgrade.extend(_raw(statement) for statement in index.drop_statements)
            continue
        using = (
            f"\n            postgresql_using={_py(index.using)}," if index.using != "btree" else ""
        )
        if index.include:
            included = ", ".join(_py(column) for column in index.include)
            using += f"\n            postgresql_include=[{included}],"
        if index.pages_per_range:
            using += (
                f'\n            postgresql_with={{"pages_per_range": {index.pages_per_range}}},'
            )
        schema = f"\n            schema={_py(index.schema)}," if index.schema != "public" else ""
        where = (
            f"\n            postgresql_where=sa.text({_py(index.predicate)}),"
            if index.predicate
            else ""
        )
        columns = ", ".join(
            f"sa.text({_py(key.sql)})" if key.descending or key.expression else _py(key.column)
            for key in index.keys
        )
        upgrade.append(
            f"        op.create_index(\n"
            f"            {_py(index.name)},\n"
            f"            {_py(index.table)},\n"
            f"            [{columns}],{schema}{where}{using}\n"
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


def _raw(statement: str) -> str:
    return f"        op.get_bind().exec_driver_sql({_py(statement)})"


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


def index_name(candidate: Candidate, table: str | None = None) -> str:
    """Return ``ix_<table>_<keys>`` (``_where_<columns>`` for a partial index).

    ``table`` names it for another table with the same columns: a partition.
    """
    method = [] if candidate.using == "btree" else [candidate.using]
    parts = ["ix", table or candidate.table, *[key.label for key in candidate.keys], *method]
    if candidate.predicate_columns:
        parts += ["where", *candidate.predicate_columns]
    return truncated_name("_".join(parts))


def truncated_name(name: str, *, suffix: str = "") -> str:
    """Return ``name`` + ``suffix`` cut to PostgreSQL's 63 bytes, keeping the suffix."""
    room = _MAX_NAME - len(suffix.encode())
    return name.encode()[:room].decode(errors="ignore") + suffix
