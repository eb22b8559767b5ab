"""The backup routes: list and read backups (read); create, verify, and restore one into
a new database (admin), each as a job with progress.

The storage is PGWARDEN_BACKUP_STORAGE, the keys PGWARDEN_ENCRYPTION_KEYS, the database
the API's own. A restore never touches an existing database: it creates the one named.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from pgwarden.api._edge import Caller, audited
from pgwarden.api._runtime import Runtime
from pgwarden.api._schemas import list_of, model_of, respond
from pgwarden.api.jobs import Job, JobProgress
from pgwarden.api.monitoring import ERRORS
from pgwarden.api.operations import jsonable
from pgwarden.backup.catalog import BackupEntry, backup_info, list_backups
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.logical import create_backup
from pgwarden.backup.manifest import VerifyRecord
from pgwarden.backup.newdb import restore_to_new_database
from pgwarden.backup.progress import BackupProgress
from pgwarden.backup.restore import RestoreResult
from pgwarden.backup.verify import verify_backup
from pgwarden.urls import parse_database_url

__all__ = [
    "RestoreRequest",
    "add_backup_routes",
    "backup_work",
    "start_backup",
    "start_restore",
    "start_verify",
]

_ID = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")


class RestoreRequest(BaseModel):
    """Where to restore a backup: a database to create on the API's server."""

    database: str = Field(min_length=1, max_length=63, examples=["app_restored"])
    owners: bool = Field(True, description="Restore owners (ALTER OWNER).")
    privileges: bool = Field(True, description="Restore privileges (GRANT).")


def _keyring(runtime: Runtime) -> BackupKeyring | None:
    if runtime.settings.encryption_keys:
        return BackupKeyring.from_settings(runtime.settings)
    return None


def _progress(report: Any) -> Any:
    def on_progress(reading: BackupProgress) -> None:
        report(JobProgress(reading.phase, reading.done, reading.total))

    return on_progress


def backup_work(runtime: Runtime) -> Any:
    """Return the work of a backup job of the API's database."""

    def work(report: Any) -> dict[str, Any]:
        url = runtime.settings.database_url or ""
        result = create_backup(
            url, runtime.storage(), keyring=_keyring(runtime), on_progress=_progress(report)
        )
        runtime.forget("backups")
        manifest = result.manifest
        return {
            "backup_id": manifest.id,
            "database": manifest.database,
            "size": manifest.size,
            "tables": len(manifest.tables),
            "started_at": manifest.started_at.isoformat(),
            "ended_at": manifest.ended_at.isoformat(),
        }

    return work


def add_backup_routes(router: APIRouter, runtime: Runtime, read: Any, admin: Any) -> None:
    """Add the backup routes to ``router``."""

    def _database() -> str | None:
        return parse_database_url(runtime.settings.database_url or "").database

    @router.get("/backups", response_model=list_of(BackupEntry), tags=["backups"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def backups() -> Any:
        """Return the backups of this database in the storage, newest first."""

        async def compute() -> Any:
            found = await runtime.in_thread(
                lambda: list_backups(runtime.storage(), database=_database())
            )
            return respond(BackupEntry, found, many=True)

        return await runtime.cached("backups", 2.0, compute)

    @router.get("/backups/{backup_id}", response_model=model_of(BackupEntry),
                tags=["backups"], dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def backup(backup_id: str = _ID) -> Any:
        """Return one backup, with its last verification."""
        found = await runtime.in_thread(lambda: backup_info(runtime.storage(), backup_id))
        return respond(BackupEntry, found)

    @router.post("/backups", response_model=model_of(Job), status_code=202, tags=["backups"],
                 responses=ERRORS)  # fmt: skip
    async def create(request: Request, caller: Caller = Depends(admin)) -> Any:
        """Start a backup of this database as a job; follow it at ``/jobs/{id}``."""
        return respond(Job, await start_backup(runtime, caller, request))

    @router.post("/backups/{backup_id}/verify", response_model=model_of(Job), status_code=202,
                 tags=["backups"], responses=ERRORS)  # fmt: skip
    async def verify(
        request: Request, backup_id: str = _ID, caller: Caller = Depends(admin)
    ) -> Any:
        """Start restoring the backup into a scratch database and checking it, as a job."""
        return respond(Job, await start_verify(runtime, caller, request, backup_id))

    @router.post("/backups/{backup_id}/restore", response_model=model_of(Job), status_code=202,
                 tags=["backups"], responses=ERRORS)  # fmt: skip
    async def restore(
        body: RestoreRequest,
        request: Request,
        backup_id: str = _ID,
        caller: Caller = Depends(admin),
    ) -> Any:
        """Start restoring the backup into a new database on this server, as a job."""
        return respond(Job, await start_restore(runtime, caller, request, backup_id, body))


async def start_backup(runtime: Runtime, caller: Caller, request: Request) -> Job:
    """Start a backup job of the API's database, audited."""
    runtime.storage()  # a missing storage is said now, not in the job

    async def start() -> Job:
        return runtime.jobs.start("backup", backup_work(runtime), token_id=caller.token_id)

    return await audited(runtime, caller, request, {}, start, outcome="started")


async def start_verify(runtime: Runtime, caller: Caller, request: Request, backup_id: str) -> Job:
    """Start a job verifying ``backup_id`` in a scratch database, audited."""
    storage = runtime.storage()

    def work(report: Any) -> dict[str, Any]:
        record = verify_backup(
            storage, backup_id, runtime.settings.database_url, keyring=_keyring(runtime),
            on_progress=_progress(report),
        )  # fmt: skip
        runtime.forget("backups")
        return jsonable(VerifyRecord, record)

    async def start() -> Job:
        await runtime.in_thread(backup_info, storage, backup_id)  # it exists
        return runtime.jobs.start(
            "verify", work, arguments={"backup_id": backup_id}, token_id=caller.token_id
        )

    return await audited(
        runtime, caller, request, {"backup_id": backup_id}, start, outcome="started"
    )


async def start_restore(
    runtime: Runtime, caller: Caller, request: Request, backup_id: str, body: RestoreRequest
) -> Job:
    """Start a job restoring ``backup_id`` into the new database ``body`` names, audited."""
    storage = runtime.storage()
    arguments = {"backup_id": backup_id, **body.model_dump()}

    def work(report: Any) -> dict[str, Any]:
        result = restore_to_new_database(
            storage, backup_id, runtime.settings.database_url or "", body.database,
            keyring=_keyring(runtime), owners=body.owners, privileges=body.privileges,
            on_progress=_progress(report),
        )  # fmt: skip
        return jsonable(RestoreResult, result)

    async def start() -> Job:
        await runtime.in_thread(backup_info, storage, backup_id)
        return runtime.jobs.start("restore", work, arguments=arguments, token_id=caller.token_id)

    return await audited(runtime, caller, request, arguments, start, outcome="started")
