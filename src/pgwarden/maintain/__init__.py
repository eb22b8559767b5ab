"""Maintain a database: VACUUM, ANALYZE and REINDEX, safely, with a dry run and progress.

Each command is one function that takes a SQLAlchemy ``Connection`` (with no
transaction begun: it is switched to autocommit) and returns a
:class:`MaintenanceReport` with one :class:`Operation` per statement::

    from pgwarden.maintain import analyze, reindex, vacuum

    with engine.connect() as conn:
        plan = vacuum(conn, min_dead_pct=10, dry_run=True)
        print(plan.statements)
        report = vacuum(conn, min_dead_pct=10, analyze=True, on_progress=print)
        for op in report.failed:
            print(op.statement, op.error, [holder.pid for holder in op.blockers], op.hint)
        reindex(conn, invalid=True, concurrently=True)

Every statement runs under a lock timeout (5 s by default) so it never queues behind a
lock for ever, and no statement timeout by default; a statement that fails is reported
and the rest still run. Names are looked up in the catalog, never pasted into SQL.
"""

from __future__ import annotations

from pgwarden.maintain.operations import LockHolder, MaintenanceReport, Operation, Status
from pgwarden.maintain.progress import Progress, progress_sample, watch_progress
from pgwarden.maintain.reindex import reindex, reindex_statement
from pgwarden.maintain.tables import (
    Index,
    Table,
    dead_tuple_tables,
    invalid_index_targets,
    resolve_indexes,
    resolve_tables,
    user_tables,
)
from pgwarden.maintain.vacuum import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_FULL_SIZE,
    analyze,
    analyze_statement,
    vacuum,
    vacuum_statement,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_FULL_SIZE",
    "Index",
    "LockHolder",
    "MaintenanceReport",
    "Operation",
    "Progress",
    "Status",
    "Table",
    "analyze",
    "analyze_statement",
    "dead_tuple_tables",
    "invalid_index_targets",
    "progress_sample",
    "reindex",
    "reindex_statement",
    "resolve_indexes",
    "resolve_tables",
    "user_tables",
    "vacuum",
    "vacuum_statement",
    "watch_progress",
]
