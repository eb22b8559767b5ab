"""The migration routes: where the database stands and its history (read); the SQL an
upgrade would run, and the upgrade itself after a backup, as a job (admin).

The Alembic config is PGWARDEN_ALEMBIC_CONFIG (the application's ``alembic.ini``); the
backup before an upgrade goes to PGWARDEN_BACKUP_STORAGE, encrypted with
PGWARDEN_ENCRYPTION_KEYS when set. Without an Alembic config every route answers 409
``NotEnabled`` saying how to set one. Answers name revisions, never the files or URLs
behind them.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pgwarden.api._edge import Caller, audited
from pgwarden.api._runtime import Runtime
from pgwarden.api._schemas import model_of, respond
from pgwarden.api.backups import _keyring
from pgwarden.api.errors import MigrationRunning
from pgwarden.api.jobs import Job, JobProgress
from pgwarden.api.monitoring import ERRORS
from pgwarden.errors import NotEnabled
from pgwarden.urls import redact_text

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

    from pgwarden.schema import MigrationProgress, Revision

__all__ = [
    "MigrationRevision",
    "MigrationState",
    "UpgradePlan",
    "UpgradeRequest",
    "add_migration_routes",
    "start_upgrade",
]

_TTL_S = 2.0
# One realistic example of each answer, whole (every key shown), for the OpenAPI document.
_FIRST: dict[str, Any] = {
    "revision": "0001", "down_revisions": [], "message": "Initial schema",
    "is_head": False, "has_downgrade": True, "applied": False,
}  # fmt: skip
_SECOND: dict[str, Any] = {
    "revision": "0002", "down_revisions": ["0001"],
    "message": "The API's own login role, with only the grants it needs",
    "is_head": True, "has_downgrade": True, "applied": False,
}  # fmt: skip
_KIND = "migrations-upgrade"
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext('pgwarden.api'), hashtext('upgrade'))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('pgwarden.api'), hashtext('upgrade'))")


class MigrationRevision(BaseModel):
    """One revision of the migrations; ``applied`` is whether the database has it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SECOND]})
    revision: str = Field(examples=["0002"])
    down_revisions: list[str] = Field(examples=[["0001"]])
    message: str = Field(examples=["The API's own login role, with only the grants it needs"])
    is_head: bool
    has_downgrade: bool
    applied: bool | None = None


class MigrationState(BaseModel):
    """The revisions the database is at, the heads of the migrations, what is pending."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"current": ["0001"], "heads": ["0002"], "pending": [_SECOND], "up_to_date": False}
            ]
        }
    )
    current: list[str] = Field(description="Revisions recorded; none: base.", examples=[["0001"]])
    heads: list[str] = Field(examples=[["0002"]])
    pending: list[MigrationRevision] = Field(description="In the order an upgrade applies them.")
    up_to_date: bool


class UpgradeRequest(BaseModel):
    """What to upgrade to, and how patiently to wait for locks."""

    target: str = Field(
        "heads",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_@+-]+$",
        description="A revision id (or unique prefix), `head` or `heads`.",
        examples=["heads"],
    )
    lock_timeout_s: float = Field(
        5.0, gt=0, le=600, description="Give up a lock after this long, then retry."
    )
    statement_timeout_s: float = Field(
        3600.0, ge=0, le=86_400, description="Longest statement; 0 for no limit."
    )
    retries: int = Field(5, ge=0, le=20, description="Retries of a revision that timed out.")


class UpgradePlan(BaseModel):
    """What an upgrade would do: the revisions it would apply and their SQL, none run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current": [],
                    "target": "heads",
                    "pending": [_FIRST, _SECOND],
                    "sql": "BEGIN;\n\nCREATE TABLE alembic_version (...);\n...\nCOMMIT;\n",
                }
            ]
        }
    )
    current: list[str]
    target: str
    pending: list[MigrationRevision]
    sql: str = Field(description="Alembic's offline SQL for the pending revisions.")


def _config(runtime: Runtime) -> Path:
    """Return the Alembic config of the API, or say how to give one."""
    config = runtime.settings.alembic_config
    if config is None:
        raise NotEnabled(
            "migrations are not configured for this API: it has no Alembic config.",
            hint="Set PGWARDEN_ALEMBIC_CONFIG to the application's alembic.ini (and "
            "install pgwarden[migrations]), then restart the server.",
        )
    return config


def _revision(found: Revision) -> MigrationRevision:
    return MigrationRevision(
        revision=found.revision, down_revisions=list(found.down_revisions),
        message=found.message, is_head=found.is_head, has_downgrade=found.has_downgrade,
        applied=found.applied,
    )  # fmt: skip


def migration_state(conn: Connection, config: Path) -> MigrationState:
    """Return where ``conn``'s database stands in the migrations of ``config``."""
    from pgwarden.schema import status

    found = status(conn, config=config)
    return MigrationState(
        current=list(found.current), heads=list(found.heads),
        pending=[_revision(rev) for rev in found.pending], up_to_date=found.up_to_date,
    )  # fmt: skip


def migration_history(conn: Connection, config: Path) -> list[MigrationRevision]:
    """Return every revision of ``config``, newest first, with whether it is applied."""
    from pgwarden.schema import history

    return [_revision(rev) for rev in history(conn, config=config)]


def _pending(conn: Connection, config: Config, target: str) -> list[MigrationRevision]:
    """Return the revisions an upgrade of ``conn``'s database to ``target`` would apply."""
    from pgwarden.schema._alembic import resolve_revisions
    from pgwarden.schema.status import _status

    resolve_revisions(config, target)  # a target naming no revision is said now
    return [_revision(rev) for rev in _status(conn, config, target).pending]


def upgrade_plan(conn: Connection, config: Path, target: str) -> UpgradePlan:
    """Return the revisions an upgrade to ``target`` would apply and their SQL; run none."""
    from pgwarden.schema import upgrade
    from pgwarden.schema._alembic import load_config

    loaded = load_config(config, url=conn.engine.url)
    pending = _pending(conn, loaded, target)
    result = upgrade(conn, target=target, config=loaded, dry_run=True)
    return UpgradePlan(
        current=list(result.before), target=target, pending=pending,
        sql=redact_text(result.sql or ""),
    )  # fmt: skip


def add_migration_routes(router: APIRouter, runtime: Runtime, read: Any, admin: Any) -> None:
    """Add the migration routes to ``router``."""

    @router.get("/migrations", response_model=MigrationState, tags=["migrations"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def state() -> Any:
        """Return the revisions the database is at, the heads, and the pending revisions."""
        config = _config(runtime)

        async def compute() -> MigrationState:
            return await runtime.call(migration_state, config)

        return await runtime.cached("migrations:state", _TTL_S, compute)

    @router.get("/migrations/history", response_model=list[MigrationRevision],
                tags=["migrations"], dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def revisions() -> Any:
        """Return every revision, newest first, with whether the database has it."""
        config = _config(runtime)

        async def compute() -> list[MigrationRevision]:
            return await runtime.call(migration_history, config)

        return await runtime.cached("migrations:history", _TTL_S, compute)

    @router.post("/migrations/plan", response_model=UpgradePlan, tags=["migrations"],
                 responses=ERRORS)  # fmt: skip
    async def plan(
        request: Request, body: UpgradeRequest | None = None, caller: Caller = Depends(admin)
    ) -> Any:
        """Return the SQL an upgrade to ``target`` would run (a dry run); change nothing."""
        chosen = body or UpgradeRequest()

        async def work() -> UpgradePlan:
            return await runtime.call(upgrade_plan, _config(runtime), chosen.target)

        return await audited(runtime, caller, request, chosen.model_dump(), work)

    @router.post("/migrations/upgrade", response_model=model_of(Job), status_code=202,
                 tags=["migrations"], responses=ERRORS)  # fmt: skip
    async def upgrade(
        request: Request, body: UpgradeRequest | None = None, caller: Caller = Depends(admin)
    ) -> Any:
        """Back the database up, then upgrade it to ``target``, as a job.

        Follow it at ``/jobs/{id}``: its progress names the revision being applied and
        the time each one took; its result lists them, with the backup's id.
        """
        return respond(Job, await start_upgrade(runtime, caller, request, body or UpgradeRequest()))


def _on_progress(report: Any, total: int) -> Any:
    done = 0
    lock = threading.Lock()

    def on_progress(event: MigrationProgress) -> None:
        nonlocal done
        with lock:
            if event.kind == "backup":
                phase = (
                    f"backup {event.message} taken in {event.seconds:.2f} s"
                    if event.seconds
                    else f"backup: {event.message}"
                )
            elif event.kind == "start":
                phase = f"upgrading {event.revision} (attempt {event.attempt})"
            elif event.kind == "retry":
                phase = f"{event.revision} timed out on a lock; retrying in {event.seconds:.1f} s"
            else:
                done += 1
                phase = f"{event.revision} applied in {event.seconds:.3f} s"
            report(JobProgress(phase, done, total))

    return on_progress


async def start_upgrade(
    runtime: Runtime, caller: Caller, request: Request, body: UpgradeRequest
) -> Job:
    """Start a job backing the database up, then upgrading it to ``body.target``, audited."""
    arguments = body.model_dump()

    async def start() -> Job:
        config = _config(runtime)
        runtime.storage()  # a missing storage, config or revision is said now, not in the job
        await runtime.call(_check_target, config, body.target)
        # No await from the check to the start: two requests cannot both pass it.
        running = [job.id for job in runtime.jobs.list() if job.kind == _KIND and not job.ended_at]
        if running:
            raise MigrationRunning(
                f"an upgrade is running already: job {running[0]}.",
                hint=f"Follow it at /jobs/{running[0]}; ask again once it has ended.",
            )
        return runtime.jobs.start(
            _KIND, _upgrade_work(runtime, config, body), arguments=arguments,
            token_id=caller.token_id,
        )  # fmt: skip

    return await audited(runtime, caller, request, arguments, start, outcome="started")


def _check_target(conn: Connection, config: Path, target: str) -> None:
    from pgwarden.schema._alembic import load_config, resolve_revisions

    conn.rollback()
    resolve_revisions(load_config(config), target)


def _upgrade_work(runtime: Runtime, config: Path, body: UpgradeRequest) -> Any:
    """Return the work of an upgrade job: a backup, then each pending revision, timed."""

    def run(conn: Connection, report: Any) -> dict[str, Any]:
        from pgwarden.schema import upgrade
        from pgwarden.schema._alembic import load_config

        loaded = load_config(config, url=conn.engine.url)
        total = len(_pending(conn, loaded, body.target))
        result = upgrade(
            conn, target=body.target, config=loaded, storage=runtime.storage(),
            keyring=_keyring(runtime), lock_timeout=body.lock_timeout_s,
            statement_timeout=body.statement_timeout_s, retries=body.retries,
            on_progress=_on_progress(report, total),
        )  # fmt: skip
        return {
            "before": list(result.before),
            "after": list(result.after),
            # the id that /backups/{id} takes: the last part of the backup's prefix
            "backup_id": result.backup.rstrip("/").rsplit("/", 1)[-1] if result.backup else None,
            "applied": [
                {"revision": rev.revision, "message": rev.message,
                 "seconds": rev.seconds, "attempts": rev.attempts}
                for rev in result.applied
            ],
        }  # fmt: skip

    def locked(conn: Connection, report: Any) -> dict[str, Any]:
        # Across processes too (several API servers on one database): one upgrade at a time.
        got = conn.execute(_TRY_LOCK).scalar_one()
        conn.commit()
        if not got:
            raise MigrationRunning(
                "another process is upgrading this database.",
                hint="Follow that upgrade where it was started; ask again once it has ended.",
            )
        try:
            return run(conn, report)
        finally:
            with suppress(DBAPIError):
                conn.rollback()
                conn.execute(_UNLOCK)
                conn.commit()

    def work(report: Any) -> dict[str, Any]:
        try:
            return runtime.with_connection(locked, report)
        finally:
            runtime.forget("migrations")
            runtime.forget("backups")

    return work
