"""Rebuild indexes: of named tables, named indexes, or every invalid one.

::

    with engine.connect() as conn:
        report = reindex(conn, indexes=["orders_customer_id_idx"], concurrently=True)

``REINDEX`` without ``CONCURRENTLY`` holds a SHARE lock on the table (no writes) and an
ACCESS EXCLUSIVE lock on each index (no query that would use it, which in practice is
every query on the table) until it ends. ``REINDEX ... CONCURRENTLY`` (PostgreSQL 12+)
builds a new copy beside the old and swaps them, letting reads and writes go on; it
also rebuilds an invalid index, such as one a failed ``CREATE INDEX CONCURRENTLY``
left. ``REINDEX TABLE CONCURRENTLY`` skips a table's invalid indexes: name them.

A failed ``REINDEX CONCURRENTLY`` leaves its half-built copy behind (``*_ccnew``): the
operation's warnings name it, with the ``DROP INDEX CONCURRENTLY`` that removes it.
``invalid=True`` skips such leftovers and says how to drop them instead of rebuilding
them into duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection

from pgwarden.errors import UserError
from pgwarden.maintain._runner import Step, prepare, run, timeout_settings
from pgwarden.maintain.operations import MaintenanceReport, Operation
from pgwarden.maintain.progress import Progress
from pgwarden.maintain.tables import (
    Index,
    Table,
    invalid_index_targets,
    resolve_indexes,
    resolve_tables,
)
from pgwarden.maintain.vacuum import DEFAULT_LOCK_TIMEOUT

__all__ = ["BLOCKING_WARNING", "reindex", "reindex_statement"]

BLOCKING_WARNING = (
    "REINDEX without CONCURRENTLY blocks writes to each table (SHARE lock) and every query "
    "that would use the index being rebuilt (ACCESS EXCLUSIVE lock) until it ends; on a "
    "live database use CONCURRENTLY (--concurrently)."
)


def reindex_statement(target: Table | Index, *, concurrently: bool = False) -> str:
    """Return the REINDEX statement for a table (all its indexes) or one index."""
    kind = "TABLE" if isinstance(target, Table) else "INDEX"
    return f"REINDEX {kind}{' CONCURRENTLY' if concurrently else ''} {target.qualified}"


def reindex(
    conn: Connection,
    *,
    tables: Sequence[str] = (),
    indexes: Sequence[str] = (),
    invalid: bool = False,
    concurrently: bool = False,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = 0.0,
    on_progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[Operation], None] | None = None,
    progress_interval: float = 0.5,
) -> MaintenanceReport:
    """Rebuild the indexes of ``tables``, the ``indexes``, and with ``invalid`` every invalid one.

    Unknown names raise :class:`~pgwarden.errors.UserError` before anything runs. The
    other options mean what they mean for :func:`~pgwarden.maintain.vacuum.vacuum`;
    with ``concurrently``, ``lock_timeout`` also bounds each wait for older transactions
    between the phases of the rebuild.
    """
    if not (tables or indexes or invalid):
        raise UserError(
            "nothing to reindex: no table, index, or invalid indexes asked for.",
            hint="Name tables (--table), indexes (--index), or pass --invalid.",
        )
    settings = timeout_settings(lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    prepare(conn)
    if concurrently and (conn.dialect.server_version_info or (0,)) < (12,):
        raise UserError(
            "REINDEX CONCURRENTLY needs PostgreSQL 12 or newer.",
            hint="Upgrade the server, or reindex without --concurrently in a quiet hour.",
        )
    targets: list[Table | Index] = [*resolve_tables(conn, tables), *resolve_indexes(conn, indexes)]
    warnings: list[str] = []
    if invalid:
        rebuild, leftovers = invalid_index_targets(conn)
        named = {target.oid for target in targets}
        targets += [index for index in rebuild if index.oid not in named]
        warnings += [
            f"skipped {index.qualified}: it is the half-built copy a failed REINDEX "
            f"CONCURRENTLY left beside the index it was rebuilding; drop it with "
            f"DROP INDEX CONCURRENTLY {index.qualified};"
            for index in leftovers
        ]
    if targets and not concurrently:
        warnings.insert(0, BLOCKING_WARNING)
    # A plain REINDEX locks each index ACCESS EXCLUSIVE, and every session that used
    # the table holds a lock on its indexes: all of them are in its way.
    mode = "ShareUpdateExclusiveLock" if concurrently else "AccessExclusiveLock"
    command = "REINDEX CONCURRENTLY" if concurrently else "REINDEX"
    steps = [
        Step(
            Operation(command, target, reindex_statement(target, concurrently=concurrently)),
            lock_mode=mode,
            concurrently=concurrently,
        )
        for target in targets
    ]
    return run(
        conn, "reindex", steps, settings=settings, warnings=warnings, dry_run=dry_run,
        on_progress=on_progress, on_done=on_done, progress_interval=progress_interval,
    )  # fmt: skip
