"""Upgrade and downgrade a database with Alembic, safely.

An upgrade backs the database up first (a pgwarden logical backup), then applies the
pending revisions one at a time on connections whose ``lock_timeout`` and
``statement_timeout`` it sets. A DDL statement waiting for its lock holds up every query
that arrives after it on that table; with a short ``lock_timeout`` it gives up instead,
its transaction rolls back, the application's queries go on, and the revision is tried
again after a growing pause, a bounded number of times.

A downgrade first renders its SQL offline and refuses, unless ``force``, to drop a table
or a column that holds rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pglast.parser import ParseError
from sqlalchemy.engine import Connection

from pgwarden.errors import UserError
from pgwarden.schema._alembic import (
    is_lock_timeout,
    load_config,
    offline_sql,
    resolve_revisions,
    run_command,
    script_directory,
)
from pgwarden.schema.drops import DataLoss, data_losses
from pgwarden.schema.errors import DowngradeRefused, MigrationFailed, MigrationLockTimeout
from pgwarden.schema.status import _status, current_revisions

if TYPE_CHECKING:
    from alembic.config import Config

    from pgwarden.backup.crypto import BackupKeyring
    from pgwarden.backup.storage import Storage

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "AppliedRevision",
    "MigrationProgress",
    "MigrationResult",
    "downgrade",
    "upgrade",
]

DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 3600.0
DEFAULT_RETRIES = 5


@dataclass(frozen=True)
class MigrationProgress:
    """One event of a migration: ``backup``, ``start``, ``retry`` or ``done`` of a revision."""

    kind: str
    revision: str | None = None
    attempt: int = 1
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class AppliedRevision:
    """A revision applied (or undone): how long it took, after how many attempts."""

    revision: str
    message: str
    seconds: float
    attempts: int


@dataclass(frozen=True)
class MigrationResult:
    """What an upgrade or downgrade did; with ``dry_run``, the SQL it would have run."""

    direction: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    applied: tuple[AppliedRevision, ...]
    backup: str | None = None
    dry_run: bool = False
    sql: str | None = None
    data_losses: tuple[DataLoss, ...] = ()


@dataclass(frozen=True)
class _Retry:
    lock_timeout: float
    statement_timeout: float
    retries: int
    delay: float
    max_delay: float

    def settings(self) -> dict[str, str]:
        return {
            "lock_timeout": f"{round(self.lock_timeout * 1000)}ms",
            "statement_timeout": f"{round(self.statement_timeout * 1000)}ms",
        }


Progress = Callable[[MigrationProgress], None]


def _no_progress(event: MigrationProgress) -> None:
    """Ignore a progress event."""


def upgrade(
    conn: Connection,
    *,
    target: str = "heads",
    config: str | Path | Config | None = None,
    backup: bool = True,
    storage: Storage | None = None,
    keyring: BackupKeyring | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
    dry_run: bool = False,
    on_progress: Progress = _no_progress,
) -> MigrationResult:
    """Upgrade ``conn``'s database to ``target`` (default every head), one revision at a time.

    With ``backup`` (the default) a logical backup into ``storage`` comes first, and
    nothing is migrated if it fails. Each revision runs on a connection with
    ``lock_timeout`` and ``statement_timeout`` (seconds; 0 is no limit); a revision that
    times out on a lock is rolled back and tried again after ``retry_delay`` seconds,
    doubled at each attempt up to ``max_retry_delay``, at most ``retries`` more times,
    then :class:`MigrationLockTimeout`. ``dry_run`` returns the SQL (Alembic's offline
    mode) and changes nothing. The migrations connect to ``conn``'s URL themselves (as
    env.py says); ``conn``'s own transaction is ended first, so that no lock of its
    stands in their way.
    """
    loaded = load_config(config, url=conn.engine.url)
    resolve_revisions(loaded, target)
    state = _status(conn, loaded, target)
    if dry_run:
        spec = target if not state.current else f"{_single(state.current, 'upgrade')}:{target}"
        sql = offline_sql(loaded, "upgrade", spec) if state.pending else ""
        return MigrationResult("upgrade", state.current, state.current, (), dry_run=True, sql=sql)
    backup_prefix = None
    if backup and state.pending:
        backup_prefix = _backup(conn, storage, keyring, on_progress)
    retry = _Retry(lock_timeout, statement_timeout, retries, retry_delay, max_retry_delay)
    applied = [
        _apply(loaded, "upgrade", rev.revision, rev.revision, rev.message, retry, on_progress)
        for rev in state.pending
    ]
    return MigrationResult(
        "upgrade", state.current, current_revisions(conn), tuple(applied), backup_prefix
    )


def downgrade(
    conn: Connection,
    *,
    target: str,
    config: str | Path | Config | None = None,
    force: bool = False,
    backup: bool = True,
    storage: Storage | None = None,
    keyring: BackupKeyring | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
    dry_run: bool = False,
    on_progress: Progress = _no_progress,
) -> MigrationResult:
    """Downgrade ``conn``'s database to ``target`` (a revision, ``-1``, or ``base``).

    The downgrade's SQL is rendered offline first; if it drops tables or columns that
    hold rows now, :class:`DowngradeRefused` names them, unless ``force``. Backups,
    timeouts, retries and ``dry_run`` are as for :func:`upgrade`.
    """
    loaded = load_config(config, url=conn.engine.url)
    current = current_revisions(conn)
    if not current:
        raise UserError("the database is at base: nothing to downgrade.")
    start = _single(current, "downgrade")
    script = script_directory(loaded)
    if target.startswith("-") and target[1:].isdigit():
        target = _steps_back(loaded, start, int(target[1:]))
    undo = [] if target == "base" else list(resolve_revisions(loaded, target))
    keep = {r.revision for rev in undo for r in script.iterate_revisions(rev.revision, "base")}
    steps = [rev for rev in script.iterate_revisions(start, "base") if rev.revision not in keep]
    sql = offline_sql(loaded, "downgrade", f"{start}:{target}") if steps else ""
    try:
        losses = tuple(data_losses(conn, sql)) if steps else ()
    except ParseError as exc:
        if not force:
            raise DowngradeRefused(
                f"the downgrade's SQL cannot be read to check what it drops: {exc}.",
                hint="Read it with --dry-run; pass --force to run it anyway.",
            ) from None
        losses = ()
    if dry_run:
        return MigrationResult(
            "downgrade", current, current, (), dry_run=True, sql=sql, data_losses=losses
        )
    if losses and not force:
        listed = ", ".join(f"{loss.what} ({loss.rows} rows)" for loss in losses)
        raise DowngradeRefused(
            f"the downgrade to {target} would drop data: {listed}.",
            hint="Back the data up or move it; pass --force to drop it anyway.",
        )
    backup_prefix = None
    if backup and steps:
        backup_prefix = _backup(conn, storage, keyring, on_progress)
    retry = _Retry(lock_timeout, statement_timeout, retries, retry_delay, max_retry_delay)
    applied = []
    for rev in steps:
        down = rev.down_revision
        to = "base" if down is None else down if isinstance(down, str) else target
        message = (rev.doc or "").strip()
        applied.append(_apply(loaded, "downgrade", to, rev.revision, message, retry, on_progress))
    return MigrationResult(
        "downgrade", current, current_revisions(conn), tuple(applied), backup_prefix,
        data_losses=losses,
    )  # fmt: skip


def _steps_back(config: Config, start: str, steps: int) -> str:
    """Return the revision ``steps`` before ``start`` (``base`` past the first)."""
    script = script_directory(config)
    found = script.get_revision(start)
    for _ in range(steps):
        down = None if found is None else found.down_revision
        if isinstance(down, tuple | list):
            raise UserError(
                "a relative downgrade across a merge is ambiguous.",
                hint="Name the revision to downgrade to.",
            )
        if down is None:
            return "base"
        found = script.get_revision(down)
    return "base" if found is None else found.revision


def _single(current: tuple[str, ...], verb: str) -> str:
    if len(current) > 1:
        raise UserError(
            f"the database is at several heads ({', '.join(current)}); cannot {verb} them "
            "in one step.",
            hint="Merge the heads with `alembic merge heads`, then upgrade.",
        )
    return current[0]


_USER_TABLES = """
SELECT count(*)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND c.relname <> 'alembic_version'
"""


def _backup(
    conn: Connection,
    storage: Storage | None,
    keyring: BackupKeyring | None,
    on_progress: Progress,
) -> str | None:
    """Back the database up; None when it holds no table yet (a first upgrade)."""
    from pgwarden.backup.logical import create_backup

    if storage is None:
        raise UserError(
            "a migration backs the database up first, and no backup storage is given.",
            hint="Set PGWARDEN_BACKUP_STORAGE or pass --storage; or --no-backup to skip it.",
        )
    tables = conn.execute(sa.text(_USER_TABLES)).scalar_one()
    if conn.in_transaction():
        conn.rollback()
    if not tables:
        on_progress(MigrationProgress("backup", message="no table yet: nothing to back up"))
        return None
    on_progress(MigrationProgress("backup", message="backing up before migrating"))
    started = time.monotonic()
    result = create_backup(conn.engine.url, storage, keyring=keyring)
    on_progress(
        MigrationProgress("backup", seconds=time.monotonic() - started, message=result.prefix)
    )
    return result.prefix


def _apply(
    config: Config,
    command: str,
    to: str,
    revision: str,
    message: str,
    retry: _Retry,
    on_progress: Progress,
) -> AppliedRevision:
    """Run one step, retrying it while it times out on a lock."""
    started = time.monotonic()
    delay = retry.delay
    for attempt in range(1, retry.retries + 2):
        on_progress(MigrationProgress("start", revision, attempt, message=message))
        try:
            run_command(config, command, to, settings=retry.settings())
        except Exception as exc:
            if not is_lock_timeout(exc):
                if isinstance(exc, MigrationFailed | UserError):
                    raise
                raise MigrationFailed(
                    f"revision {revision} failed: {_first_line(exc)}.",
                    hint="Nothing of this revision was kept if env.py runs it in a "
                    "transaction; fix it and upgrade again.",
                ) from exc
            if attempt > retry.retries:
                raise MigrationLockTimeout(
                    f"revision {revision} could not take its locks in {retry.lock_timeout:g}s, "
                    f"{attempt} times.",
                    hint="See who holds them with `pgwarden insight locks`; try again when "
                    "traffic is lower, or raise --lock-timeout or --retries.",
                ) from None
            pause = min(delay, retry.max_delay) * random.uniform(0.8, 1.2)  # noqa: S311
            on_progress(
                MigrationProgress("retry", revision, attempt, pause, "lock timeout; retrying")
            )
            time.sleep(pause)
            delay *= 2
            continue
        seconds = time.monotonic() - started
        on_progress(MigrationProgress("done", revision, attempt, seconds, message))
        return AppliedRevision(revision, message, seconds, attempt)
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    from pgwarden.urls import redact_text

    orig = getattr(exc, "orig", None) or exc
    lines = redact_text(str(orig)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
