"""Update a big table in batches, committing each, with progress: a data migration.

One ``UPDATE`` of a whole table holds its row locks, and the dead versions it leaves,
until it commits; batches keyed on the primary key each commit on their own, so the
application waits at most for one batch, and a failure keeps the batches done. Inside
an Alembic revision pass ``op``: the batches run in Alembic's autocommit block (so the
revision's own transaction is committed first); offline (``--sql``) one ``UPDATE`` is
written instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier, resolve_table
from pgwarden.errors import UserError

__all__ = ["BatchProgress", "BatchedUpdate", "batched_update"]

_PRIMARY_KEY = sa.text(
    """
SELECT a.attname
FROM pg_index AS i
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = CAST(:table AS regclass)
  AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""
)


@dataclass(frozen=True)
class BatchProgress:
    """Rows updated so far of ``total`` (rows matching ``where`` when it started)."""

    table: str
    rows: int
    total: int
    batches: int
    seconds: float


@dataclass(frozen=True)
class BatchedUpdate:
    """What :func:`batched_update` did."""

    table: str
    rows: int
    batches: int
    seconds: float


def _no_progress(progress: BatchProgress) -> None:
    """Ignore progress."""


def batched_update(
    op_or_conn: Any,
    table: str,
    *,
    set_: Mapping[str, str],
    where: str | None = None,
    params: Mapping[str, Any] | None = None,
    batch_size: int = 1000,
    on_progress: Callable[[BatchProgress], None] = _no_progress,
) -> BatchedUpdate:
    """Run ``UPDATE table SET column = expression ... WHERE where`` in committed batches.

    ``op_or_conn`` is Alembic's ``op`` (inside a revision) or a Connection, whose open
    transaction is committed after each batch. ``table`` is ``name`` or
    ``schema.name`` as SQL reads it; ``set_`` maps each column to a SQL expression
    (``{"email": "lower(email)"}``), ``where`` is a SQL condition; both may use
    ``:named`` ``params``. The table needs a primary key; batches walk it in order, so
    each row is updated once, and ``where`` need not exclude the rows already done.
    """
    if not set_:
        raise UserError("batched_update needs at least one column in set_.")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, not {batch_size}.")
    binds = dict(params or {})
    condition = f"({where})" if where else "TRUE"
    context = getattr(op_or_conn, "get_context", None)
    migration = context() if context is not None else None
    conn: Connection = op_or_conn.get_bind() if migration is not None else op_or_conn
    assignments = ", ".join(f"{quote_identifier(col)} = {expr}" for col, expr in set_.items())
    if migration is not None and migration.as_sql:
        target = table  # offline: no catalogue to resolve against; the name as written
        op_or_conn.execute(
            sa.text(f"UPDATE {target} SET {assignments} WHERE {condition}").bindparams(**binds)
        )
        return BatchedUpdate(table, 0, 0, 0.0)
    schema, name = resolve_table(conn, table)
    target = qualified(schema, name)
    keys = list(conn.execute(_PRIMARY_KEY, {"table": target}).scalars())
    if not keys:
        raise UserError(
            f"table {schema}.{name} has no primary key to update it in batches by.",
            hint="Add a primary key, or update it in one statement.",
        )
    started = time.monotonic()
    rows = batches = 0
    with migration.autocommit_block() if migration is not None else nullcontext():
        # In Alembic's autocommit block each statement commits itself, on a connection
        # of the block's own; a Connection's transaction is committed here, batch by batch.
        if migration is not None:
            conn = op_or_conn.get_bind()
        count = sa.text(f"SELECT count(*) FROM {target} WHERE {condition}")
        total = int(conn.execute(count, binds).scalar_one())
        _commit(conn, migration is None)
        last: tuple[Any, ...] | None = None
        while True:
            statement = _batch_statement(target, keys, assignments, condition, last is not None)
            key_binds = {} if last is None else {f"pgw_k{i}": v for i, v in enumerate(last)}
            row = conn.execute(
                sa.text(statement), {**binds, **key_binds, "pgw_batch": batch_size}
            ).first()
            _commit(conn, migration is None)
            if row is None:
                break
            last = tuple(row[: len(keys)])
            rows += int(row[-1])
            batches += 1
            on_progress(BatchProgress(table, rows, total, batches, time.monotonic() - started))
    return BatchedUpdate(table, rows, batches, time.monotonic() - started)


def _batch_statement(
    target: str, keys: list[str], assignments: str, condition: str, after: bool
) -> str:
    """Return the statement that updates the next batch and returns its last key and size."""
    cols = [quote_identifier(key) for key in keys]
    aliases = [f"pgw_k{i}" for i in range(len(keys))]
    picked = ", ".join(f"{col} AS {alias}" for col, alias in zip(cols, aliases, strict=True))
    since = f"({', '.join(cols)}) > ({', '.join(':' + a for a in aliases)}) AND " if after else ""
    order = ", ".join(cols)
    match = " AND ".join(f"pgw_t.{col} = pgw_b.{a}" for col, a in zip(cols, aliases, strict=True))
    return f"""
WITH pgw_b AS (
    SELECT {picked}
    FROM {target}
    WHERE {since}{condition}
    ORDER BY {order}
    LIMIT :pgw_batch
    FOR UPDATE
), pgw_u AS (
    UPDATE {target} AS pgw_t
    SET {assignments}
    FROM pgw_b
    WHERE {match}
    RETURNING 1
)
SELECT {", ".join(aliases)}, (SELECT count(*) FROM pgw_u)
FROM pgw_b
ORDER BY {", ".join(f"{a} DESC" for a in aliases)}
LIMIT 1
"""


def _commit(conn: Connection, ours: bool) -> None:
    if ours and conn.in_transaction():
        conn.commit()
