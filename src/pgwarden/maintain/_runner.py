"""Run planned maintenance statements one by one on an autocommit connection.

Shared by vacuum, analyze and reindex: the session settings (lock and statement
timeouts, restored afterwards), progress from a second connection, the server's
warnings, and a failure turned into an :class:`Operation` that says who held the lock.
A failure of one statement does not stop the others; a lost connection or Ctrl-C does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import qualified
from pgwarden.errors import UserError
from pgwarden.maintain._session import LOCK_TIMEOUT, is_autocommit, session_settings
from pgwarden.maintain.operations import LockHolder, MaintenanceReport, Operation
from pgwarden.maintain.progress import Progress, ProgressWatcher
from pgwarden.maintain.tables import Index, Table

QUERY_CANCELED = "57014"

# Granted modes that conflict with the mode a statement asks for (the table in
# "Conflicting Lock Modes" of the PostgreSQL manual), for the three that maintenance takes.
_CONFLICTS = {
    "ShareUpdateExclusiveLock": [
        "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock",
        "AccessExclusiveLock",
    ],
    "ShareLock": [
        "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock",
        "ExclusiveLock", "AccessExclusiveLock",
    ],
    "AccessExclusiveLock": [
        "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
        "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
    ],
}  # fmt: skip

_HOLDER_COLUMNS = """
       a.pid,
       a.usename AS "user",
       a.application_name AS application,
       a.backend_type,
       a.state,
       {mode} AS mode,
       a.xact_start,
       left(a.query, 200) AS query
"""

# Sessions holding a lock that conflicts with ours on the table, its indexes or its
# TOAST table. Read after the timeout: our own wait is over, so pg_blocking_pids()
# of our backend would be empty by then.
LOCK_HOLDERS = text(
    "SELECT DISTINCT ON (a.pid)"
    + _HOLDER_COLUMNS.format(mode="l.mode")
    + """
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.granted
  AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
  AND l.mode = ANY(CAST(:modes AS text[]))
  AND (l.relation = CAST(:table AS oid)
       OR l.relation IN (SELECT indexrelid FROM pg_index WHERE indrelid = CAST(:table AS oid))
       OR l.relation = (SELECT reltoastrelid FROM pg_class WHERE oid = CAST(:table AS oid)))
ORDER BY a.pid, l.mode
"""
)

# Transactions of this database older than a REINDEX CONCURRENTLY, which it waits for
# between its phases without their holding any lock on the table.
OLDER_TRANSACTIONS = text(
    "SELECT"
    + _HOLDER_COLUMNS.format(mode="NULL::text")
    + """
FROM pg_stat_activity AS a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.xact_start < :started
  AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
ORDER BY a.xact_start
"""
)

INVALID_INDEXES_OF = text(
    """
SELECT c.oid::bigint AS oid,
       n.nspname AS schema,
       c.relname AS name
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE i.indrelid = CAST(:table AS oid)
  AND NOT i.indisvalid
"""
)


@dataclass(frozen=True)
class Step:
    """A planned operation and what running it involves.

    ``lock_mode`` is the lock it takes on the table, to name whoever is in its way;
    ``concurrently`` marks a ``REINDEX CONCURRENTLY``, which can time out waiting for
    older transactions and leave a half-built index behind.
    """

    operation: Operation
    lock_mode: str
    concurrently: bool = False


def timeout_settings(*, lock_timeout: float, statement_timeout: float) -> dict[str, str]:
    """Return the session settings for timeouts given in seconds, 0 meaning none."""
    settings = {}
    for name, seconds in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        if seconds < 0:
            raise UserError(
                f"{name.replace('_', ' ')} must be 0 (none) or more seconds, not {seconds}.",
                hint="Give the timeout in seconds, such as 5 or 0.5.",
            )
        milliseconds = round(seconds * 1000)
        settings[name] = f"{milliseconds}ms" if milliseconds else "0"
    return settings


def prepare(conn: Connection) -> None:
    """Switch ``conn`` to autocommit, which VACUUM and REINDEX CONCURRENTLY need."""
    if is_autocommit(conn):
        return
    if conn.in_transaction():
        raise UserError(
            "VACUUM and REINDEX CONCURRENTLY cannot run inside a transaction block.",
            hint="Pass a connection with no transaction begun (engine.connect()); "
            "pgwarden switches it to autocommit.",
        )
    conn.execution_options(isolation_level="AUTOCOMMIT")


def run(
    conn: Connection,
    command: str,
    steps: Sequence[Step],
    *,
    settings: dict[str, str],
    warnings: list[str],
    dry_run: bool,
    on_progress: Callable[[Progress], None] | None,
    on_done: Callable[[Operation], None] | None,
    progress_interval: float,
    below_threshold: int = 0,
) -> MaintenanceReport:
    """Run ``steps`` (unless ``dry_run``) and return the report of ``command``."""
    operations = (
        [step.operation for step in steps]
        if dry_run
        else execute(
            conn,
            steps,
            settings=settings,
            on_progress=on_progress,
            on_done=on_done,
            progress_interval=progress_interval,
        )
    )
    return MaintenanceReport(
        command=command,
        dry_run=dry_run,
        settings=settings,
        operations=operations,
        warnings=warnings,
        below_threshold=below_threshold,
    )


def execute(
    conn: Connection,
    steps: Sequence[Step],
    *,
    settings: dict[str, str],
    on_progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[Operation], None] | None = None,
    progress_interval: float = 0.5,
) -> list[Operation]:
    """Run ``steps`` in order on autocommit ``conn``; return each one's outcome."""
    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    done: list[Operation] = []
    # One watcher, on one connection of its own, for the whole run: the statements all
    # run in the one backend ``pid``.
    watcher = (
        ProgressWatcher(conn.engine, pid, on_progress, interval=progress_interval)
        if on_progress is not None
        else None
    )
    with (
        session_settings(conn, settings),
        _warnings(conn) as warnings,
        watcher or nullcontext(),
    ):
        for step in steps:
            warnings.clear()
            watching = watcher.watching() if watcher is not None else nullcontext()
            operation = _run(conn, step, watching, settings, warnings)
            done.append(operation)
            if on_done is not None:
                on_done(operation)
    return done


def _run(
    conn: Connection,
    step: Step,
    watching: AbstractContextManager[None],
    settings: dict[str, str],
    warnings: list[str],
) -> Operation:
    op = step.operation
    table_oid = op.target.table_oid if isinstance(op.target, Index) else op.target.oid
    started = invalid_before = None
    if step.concurrently:
        started = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        invalid_before = {row.oid for row in conn.execute(INVALID_INDEXES_OF, {"table": table_oid})}
    began = time.monotonic()
    try:
        with watching:
            # exec_driver_sql, not text(): quoted names may hold colons, which text()
            # takes for parameters. The driver still reads %s as one: double each %.
            conn.exec_driver_sql(op.statement.replace("%", "%%"))
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        seconds = time.monotonic() - began
        failed = _failure(conn, step, error, table_oid, settings, started, invalid_before)
        return dataclasses.replace(failed, seconds=seconds, warnings=[*warnings, *failed.warnings])
    return dataclasses.replace(
        op, status="ok", seconds=time.monotonic() - began, warnings=list(warnings)
    )


def _failure(
    conn: Connection,
    step: Step,
    error: DBAPIError,
    table_oid: int,
    settings: dict[str, str],
    started: Any,
    invalid_before: set[int] | None,
) -> Operation:
    op = step.operation
    sqlstate = getattr(error.orig, "sqlstate", None)
    detail = str(error.orig or error).strip().splitlines()
    message = detail[0] if detail else type(error).__name__
    hint: str | None = None
    blockers: list[LockHolder] = []
    left_behind: list[str] = []
    if invalid_before is not None:
        for row in conn.execute(INVALID_INDEXES_OF, {"table": table_oid}):
            if row.oid not in invalid_before:
                left_behind.append(qualified(row.schema, row.name, plain=True))
    if sqlstate == LOCK_TIMEOUT:
        modes = _CONFLICTS[step.lock_mode]
        blockers = [
            LockHolder(**row._mapping)
            for row in conn.execute(LOCK_HOLDERS, {"modes": modes, "table": table_oid})
        ]
        timeout = settings.get("lock_timeout", "?")
        if blockers or not step.concurrently:
            message = (
                f"could not lock {_table_name(op)} within lock_timeout ({timeout}): "
                "another session holds a conflicting lock"
                + ("" if blockers else ", and has released it since")
            )
        else:
            blockers = [LockHolder(**row._mapping) for row in conn.execute(
                OLDER_TRANSACTIONS, {"started": started}
            )]  # fmt: skip
            message = (
                f"{op.command} waited longer than lock_timeout ({timeout}) for transactions "
                "older than itself to finish"
            )
        hint = _lock_hint(blockers)
    elif sqlstate == QUERY_CANCELED:
        if settings.get("statement_timeout", "0") != "0":
            hint = (
                "The statement ran past the statement timeout; raise it, or give 0 for "
                "none, and run it again (--statement-timeout)."
            )
        else:
            hint = "Another session cancelled it (pg_cancel_backend); run it again."
    warnings = [
        f"{op.command} left the invalid index {name} behind; drop it with "
        f"DROP INDEX CONCURRENTLY {name};"
        for name in left_behind
    ]
    if left_behind:
        drops = " ".join(f"DROP INDEX CONCURRENTLY {name};" for name in left_behind)
        hint = f"{hint + ' ' if hint else ''}Then drop what it left behind: {drops}"
    return dataclasses.replace(
        op, status="failed", error=message, hint=hint, blockers=blockers, warnings=warnings
    )


def _table_name(op: Operation) -> str:
    if isinstance(op.target, Table):
        return op.target.qualified
    return f"{op.target.table} (index {op.target.qualified})"


def _lock_hint(blockers: list[LockHolder]) -> str:
    wait = "Raise the lock timeout (--lock-timeout) to wait longer, or run it at a quieter time."
    if not blockers:
        return f"Run it again. {wait}"
    pids = ", ".join(str(holder.pid) for holder in blockers)
    sessions = "session" if len(blockers) == 1 else "sessions"
    first = blockers[0].pid
    return (
        f"Wait for {sessions} {pids} to finish, or end one with "
        f"SELECT pg_terminate_backend({first}); then run it again. {wait}"
    )


@contextmanager
def _warnings(conn: Connection) -> Iterator[list[str]]:
    """Collect the WARNINGs the server sends while statements run."""
    collected: list[str] = []
    driver = conn.connection.driver_connection
    add = getattr(driver, "add_notice_handler", None)
    remove = getattr(driver, "remove_notice_handler", None)
    if add is None or remove is None:  # not psycopg: warnings go unseen, the rest works
        yield collected
        return

    def handler(diagnostic: Any) -> None:
        if diagnostic.severity_nonlocalized == "WARNING":
            collected.append(str(diagnostic.message_primary))

    add(handler)
    try:
        yield collected
    finally:
        remove(handler)
