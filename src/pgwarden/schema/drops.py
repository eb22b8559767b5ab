"""Find what a downgrade would drop, and how many rows each dropped thing holds now.

The downgrade is rendered to SQL offline (Alembic's ``--sql``: nothing runs), parsed
with pglast, and each ``DROP TABLE`` and ``ALTER TABLE ... DROP COLUMN`` is looked up in
the live database: a table holding rows, or a column holding a value that is not NULL,
is data the downgrade would lose.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ObjectType
from pglast.visitors import Visitor
from sqlalchemy.engine import Connection

from pgwarden._sql import find_relation, qualified, quote_identifier

__all__ = ["DataLoss", "data_losses", "dropped_objects"]

# Counting stops here: enough to say "this holds data", bounded on a huge table.
COUNT_CAP = 1_000_000


@dataclass(frozen=True)
class DataLoss:
    """A table, or a column of one (``column``), that a downgrade would drop with its rows."""

    table: str
    column: str | None
    rows: int

    @property
    def what(self) -> str:
        """Return ``table`` or ``table.column`` as a person reads it."""
        return self.table if self.column is None else f"{self.table}.{self.column}"


class _Drops(Visitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, str | None]] = []

    def visit_DropStmt(self, ancestors: object, node: ast.DropStmt) -> None:
        if node.removeType == ObjectType.OBJECT_TABLE:
            for names in node.objects or ():
                self.found.append((_name([n.sval for n in names]), None))

    def visit_AlterTableStmt(self, ancestors: object, node: ast.AlterTableStmt) -> None:
        if node.objtype != ObjectType.OBJECT_TABLE:
            return
        relation = node.relation
        if relation is None:
            return
        parts = [p for p in (relation.catalogname, relation.schemaname, relation.relname) if p]
        for cmd in node.cmds or ():
            if isinstance(cmd, ast.AlterTableCmd) and cmd.subtype == AlterTableType.AT_DropColumn:
                self.found.append((_name(parts), cmd.name))


def _name(parts: list[str]) -> str:
    return ".".join(quote_identifier(part, plain=True) for part in parts)


def dropped_objects(sql: str) -> list[tuple[str, str | None]]:
    """Return the tables (column None) and columns the statements of ``sql`` drop.

    Tables are quoted names as ``to_regclass`` reads them. Raise
    :class:`pglast.parser.ParseError` when ``sql`` is not PostgreSQL.
    """
    visitor = _Drops()
    visitor(parse_sql(sql))
    return visitor.found


def data_losses(conn: Connection, sql: str) -> list[DataLoss]:
    """Return what the statements of ``sql`` would drop that holds rows now.

    A dropped table or column that does not exist yet (made earlier in the same
    downgrade) holds nothing. Counts stop at :data:`COUNT_CAP`. The transaction the
    counts ran in is rolled back, so that no lock of theirs is kept.
    """
    losses = []
    try:
        for name, column in dropped_objects(sql):
            relation = find_relation(conn, name)
            if relation is None or relation.kind not in ("r", "p"):
                continue
            table = qualified(relation.schema, relation.name)
            where = "" if column is None else f" WHERE {quote_identifier(column)} IS NOT NULL"
            if column is not None and not _has_column(conn, relation.oid, column):
                continue
            rows = conn.execute(
                sa.text(f"SELECT count(*) FROM (SELECT FROM {table}{where} LIMIT :cap) AS t"),
                {"cap": COUNT_CAP},
            ).scalar_one()
            if rows:
                shown = f"{relation.schema}.{relation.name}"
                losses.append(DataLoss(table=shown, column=column, rows=int(rows)))
    finally:
        if conn.in_transaction():
            conn.rollback()
    return losses


def _has_column(conn: Connection, oid: int, column: str) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT FROM pg_attribute"
                " WHERE attrelid = :oid AND attname = :name AND attnum > 0 AND NOT attisdropped)"
            ),
            {"oid": oid, "name": column},
        ).scalar_one()
    )
