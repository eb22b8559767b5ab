"""VACUUM and ANALYZE tables: named ones, all of them, or those with many dead tuples.

::

    with engine.connect() as conn:
        report = vacuum(conn, min_dead_pct=10, analyze=True)
        for op in report.operations:
            print(op.statement, op.status, op.seconds, op.error)

Each statement runs on its own in autocommit (VACUUM cannot run in a transaction),
with a ``lock_timeout`` (5 s by default) so that it fails instead of waiting forever
for a lock another session holds, and no ``statement_timeout`` by default, because
maintenance of a large table legitimately takes long and stopping it halfway throws
the work away. A statement that fails is reported with the session in its way, and the
others still run.

``VACUUM FULL`` rewrites the table under an ACCESS EXCLUSIVE lock, blocking every read
and write until it is done; it is refused for a table larger than
``max_full_size_bytes`` (1 GiB) unless ``force=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection

from pgwarden._units import format_size
from pgwarden.errors import UserError
from pgwarden.maintain._runner import Step, prepare, run, timeout_settings
from pgwarden.maintain.operations import MaintenanceReport, Operation
from pgwarden.maintain.progress import Progress
from pgwarden.maintain.tables import Table, dead_tuple_tables, resolve_tables, user_tables

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_FULL_SIZE",
    "analyze",
    "analyze_statement",
    "vacuum",
    "vacuum_statement",
]

DEFAULT_LOCK_TIMEOUT = 5.0
"""Seconds a statement waits for its lock before it gives up."""

DEFAULT_MAX_FULL_SIZE = 1024**3
"""Bytes (table, TOAST and indexes) above which VACUUM FULL needs ``force``."""

FULL_LOCK_WARNING = (
    "VACUUM FULL rewrites each table under an ACCESS EXCLUSIVE lock: no session can read "
    "or write it until the rewrite ends, and the rewrite needs free disk space for a "
    "copy of the table and its indexes."
)


def vacuum_statement(
    table: Table, *, full: bool = False, freeze: bool = False, analyze: bool = False
) -> str:
    """Return the VACUUM statement for ``table`` with the options chosen."""
    options = [
        name for name, on in (("FULL", full), ("FREEZE", freeze), ("ANALYZE", analyze)) if on
    ]
    if not options:
        return f"VACUUM {table.qualified}"
    return f"VACUUM ({', '.join(options)}) {table.qualified}"


def analyze_statement(table: Table) -> str:
    """Return the ANALYZE statement for ``table``."""
    return f"ANALYZE {table.qualified}"


def vacuum(
    conn: Connection,
    tables: Sequence[str] | None = None,
    *,
    full: bool = False,
    freeze: bool = False,
    analyze: bool = False,
    min_dead_pct: float | None = None,
    min_dead_tuples: int = 1000,
    max_full_size_bytes: int = DEFAULT_MAX_FULL_SIZE,
    force: bool = False,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = 0.0,
    on_progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[Operation], None] | None = None,
    progress_interval: float = 0.5,
) -> MaintenanceReport:
    """Vacuum ``tables`` (names as in SQL; ``None`` for every user table), one at a time.

    With ``min_dead_pct`` only the tables whose dead tuples are at least that percent of
    live and dead ones, and at least ``min_dead_tuples``, are vacuumed. Unknown names,
    and ``full`` on a table over ``max_full_size_bytes`` without ``force``, raise
    :class:`~pgwarden.errors.UserError` before anything runs. ``dry_run`` returns the
    plan and runs nothing. Timeouts are in seconds, 0 for none. ``on_progress`` is
    called from another thread with progress read every ``progress_interval`` seconds;
    ``on_done`` with each operation as it ends. ``conn`` must have no transaction
    begun: it is switched to autocommit.
    """
    settings = timeout_settings(lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    prepare(conn)
    selected = user_tables(conn) if tables is None else resolve_tables(conn, tables)
    below = 0
    if min_dead_pct is not None:
        chosen = dead_tuple_tables(
            selected, min_dead_pct=min_dead_pct, min_dead_tuples=min_dead_tuples
        )
        below, selected = len(selected) - len(chosen), chosen
    warnings = []
    if full and selected:
        _refuse_large(selected, max_full_size_bytes, force=force)
        warnings.append(FULL_LOCK_WARNING)
    mode = "AccessExclusiveLock" if full else "ShareUpdateExclusiveLock"
    steps = [
        Step(
            Operation(
                "VACUUM FULL" if full else "VACUUM",
                table,
                vacuum_statement(table, full=full, freeze=freeze, analyze=analyze),
            ),
            lock_mode=mode,
        )
        for table in selected
    ]
    return run(
        conn, "vacuum", steps, settings=settings, warnings=warnings, dry_run=dry_run,
        on_progress=on_progress, on_done=on_done, progress_interval=progress_interval,
        below_threshold=below,
    )  # fmt: skip


def analyze(
    conn: Connection,
    tables: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = 0.0,
    on_progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[Operation], None] | None = None,
    progress_interval: float = 0.5,
) -> MaintenanceReport:
    """Gather planner statistics for ``tables`` (``None`` for every user table).

    The options mean what they mean for :func:`vacuum`. A partitioned table's own
    statistics come only from naming it: autovacuum never analyzes a partitioned parent.
    """
    settings = timeout_settings(lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    prepare(conn)
    selected = user_tables(conn) if tables is None else resolve_tables(conn, tables)
    steps = [
        Step(Operation("ANALYZE", table, analyze_statement(table)), "ShareUpdateExclusiveLock")
        for table in selected
    ]
    return run(
        conn, "analyze", steps, settings=settings, warnings=[], dry_run=dry_run,
        on_progress=on_progress, on_done=on_done, progress_interval=progress_interval,
    )  # fmt: skip


def _refuse_large(tables: Sequence[Table], limit: int, *, force: bool) -> None:
    # A table whose size could not be read (another session holds a lock on it) might
    # be of any size: it is refused too.
    large = [table for table in tables if table.size_bytes > limit or not table.size_exact]
    if not large or force:
        return
    listed = ", ".join(
        f"{table.qualified} ({format_size(table.size_bytes)})"
        if table.size_exact
        else f"{table.qualified} (size unknown: another session holds a lock on it)"
        for table in large
    )
    raise UserError(
        f"refusing VACUUM FULL of {listed}: over the {format_size(limit)} limit. VACUUM FULL "
        "holds an ACCESS EXCLUSIVE lock for the whole rewrite, blocking every read and "
        "write of the table until it ends. Nothing was run.",
        hint="Rebuild it online with pg_repack (pg_repack --table=...), or, in a "
        "maintenance window, pass --force (or raise --max-full-size).",
    )
