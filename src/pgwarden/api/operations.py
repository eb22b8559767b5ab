"""The changing routes on the database: signal a session, plan and run maintenance,
take a snapshot; and the routes that read what changing calls did (jobs, audit).

Every changing route needs the ``operate`` scope (``admin`` for the audit record), counts
against the caller's rate limit and is written to the audit record with its outcome.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from pgwarden.advise import IndexAdvice, advise_indexes
from pgwarden.api._edge import Caller, audited
from pgwarden.api._runtime import Runtime
from pgwarden.api._schemas import list_of, model_of, respond
from pgwarden.api.audit import AuditEntry, audit_entries
from pgwarden.api.jobs import Job, JobProgress
from pgwarden.api.monitoring import ERRORS
from pgwarden.insight import history
from pgwarden.insight.signals import CancelResult, cancel
from pgwarden.maintain import (
    MaintenanceReport,
    Operation,
    Table,
    analyze,
    reindex,
    user_tables,
    vacuum,
)

__all__ = [
    "MaintenanceRequest",
    "SignalRequest",
    "add_operation_routes",
    "maintenance",
    "signal_session",
    "start_maintenance",
    "take_snapshot_audited",
]


class SignalRequest(BaseModel):
    """How to signal a session."""

    dry_run: bool = Field(False, description="Show the session that would be hit; send nothing.")
    wait_s: float = Field(5.0, ge=0, le=60, description="For terminate: wait this long for it.")


class MaintenanceRequest(BaseModel):
    """What maintenance to plan or run."""

    command: Literal["vacuum", "analyze", "reindex"] = Field("vacuum", examples=["vacuum"])
    tables: list[str] | None = Field(
        None,
        max_length=1000,
        description="Names as in SQL; none for every user table.",
        examples=[["public.orders"]],
    )
    analyze: bool = Field(False, description="VACUUM: also gather statistics.")
    min_dead_pct: float | None = Field(
        None, ge=0, le=100, description="VACUUM: only tables with this share of dead tuples."
    )
    invalid: bool = Field(False, description="REINDEX: every invalid index.")
    concurrently: bool = Field(True, description="REINDEX: without blocking writes.")


def maintenance(conn: Any, request: MaintenanceRequest, **options: Any) -> MaintenanceReport:
    """Run (or with ``dry_run=True`` plan) the maintenance ``request`` asks for."""
    if request.command == "vacuum":
        return vacuum(
            conn, request.tables, analyze=request.analyze, min_dead_pct=request.min_dead_pct,
            **options,
        )  # fmt: skip
    if request.command == "analyze":
        return analyze(conn, request.tables, **options)
    return reindex(
        conn, tables=request.tables or (), invalid=request.invalid,
        concurrently=request.concurrently, **options,
    )  # fmt: skip


def jsonable(cls: type, value: Any) -> dict[str, Any]:
    """Return ``value`` (a ``cls``) as JSON-ready values, properties included."""
    dumped: dict[str, Any] = respond(cls, value).model_dump(mode="json")
    return dumped


def add_operation_routes(
    router: APIRouter, runtime: Runtime, read: Any, operate: Any, admin: Any
) -> None:
    """Add the changing routes, and those reading jobs and the audit record."""

    for action in ("cancel", "terminate"):
        _add_signal_route(router, runtime, operate, action)

    @router.get("/maintenance/tables", response_model=list_of(Table), tags=["maintenance"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def maintenance_tables() -> Any:
        """Return the user tables with their dead tuples and last (auto)vacuum and analyze."""
        return respond(Table, await runtime.call(user_tables), many=True)

    @router.post("/maintenance/plan", response_model=model_of(MaintenanceReport),
                 tags=["maintenance"], responses=ERRORS)  # fmt: skip
    async def plan(
        body: MaintenanceRequest, request: Request, caller: Caller = Depends(operate)
    ) -> Any:
        """Return the statements a maintenance run would execute; run none."""

        async def work() -> Any:
            report = await runtime.call(_autocommit, maintenance, body, dry_run=True)
            return respond(MaintenanceReport, report)

        return await audited(runtime, caller, request, body.model_dump(), work)

    @router.post("/maintenance/run", response_model=model_of(Job), status_code=202,
                 tags=["maintenance"], responses=ERRORS)  # fmt: skip
    async def run(
        body: MaintenanceRequest, request: Request, caller: Caller = Depends(operate)
    ) -> Any:
        """Start a maintenance run as a job; follow it at ``/jobs/{id}``."""
        return respond(Job, await start_maintenance(runtime, caller, request, body))

    @router.post("/space/snapshots", response_model=model_of(history.Snapshot),
                 status_code=201, tags=["space"], responses=ERRORS)  # fmt: skip
    async def take_snapshot(
        request: Request,
        keep_days: int | None = Query(None, ge=1, le=100_000),
        caller: Caller = Depends(operate),
    ) -> Any:
        """Store a snapshot of sizes and query statistics, for growth and regressions."""
        taken = await take_snapshot_audited(runtime, caller, request, keep_days)
        return respond(history.Snapshot, taken)

    @router.get("/indexes/advice", response_model=model_of(IndexAdvice), tags=["indexes"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def advice() -> Any:
        """Return the indexes worth creating for the workload, with the proof (cached)."""

        async def compute() -> Any:
            return respond(IndexAdvice, await runtime.call(advise_indexes))

        return await runtime.cached("advice", runtime.options.advice_ttl_s, compute)

    @router.get("/jobs", response_model=list_of(Job), tags=["jobs"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def jobs() -> Any:
        """Return this server's jobs (backups, verifies, restores, maintenance), newest first."""
        return respond(Job, runtime.jobs.list(), many=True)

    @router.get("/jobs/{job_id}", response_model=model_of(Job), tags=["jobs"],
                dependencies=[Depends(read)], responses=ERRORS)  # fmt: skip
    async def job(job_id: str = Path(max_length=100)) -> Any:
        """Return one job: its status, progress, and result or error."""
        return respond(Job, runtime.jobs.get(job_id))

    @router.get("/audit", response_model=list_of(AuditEntry), tags=["audit"],
                dependencies=[Depends(admin)], responses=ERRORS)  # fmt: skip
    async def audit(limit: int = Query(100, ge=1, le=10_000)) -> Any:
        """Return the latest changing calls: token, route, arguments, outcome and time."""
        return respond(AuditEntry, await runtime.call(audit_entries, limit=limit), many=True)


def _add_signal_route(router: APIRouter, runtime: Runtime, operate: Any, action: str) -> None:
    @router.post(f"/sessions/{{pid}}/{action}", response_model=model_of(CancelResult),
                 tags=["sessions"], responses=ERRORS, name=f"{action}_session",
                 summary=f"{action.capitalize()} a session")  # fmt: skip
    async def signal(
        request: Request,
        pid: int = Path(ge=1, le=2**31 - 1),
        body: SignalRequest | None = None,
        caller: Caller = Depends(operate),
    ) -> Any:
        result = await signal_session(
            runtime, caller, request, pid, action, body or SignalRequest()
        )
        return respond(CancelResult, result)

    signal.__doc__ = (
        "Cancel the query of session ``pid`` (keeping its connection)."
        if action == "cancel"
        else "End session ``pid``, rolling back its transaction."
    )


async def signal_session(
    runtime: Runtime,
    caller: Caller,
    request: Request,
    pid: int,
    action: str,
    chosen: SignalRequest,
) -> CancelResult:
    """Cancel the query of session ``pid``, or terminate it, audited."""

    async def work() -> CancelResult:
        return await runtime.call(
            _autocommit, cancel, pid, terminate=action == "terminate",
            dry_run=chosen.dry_run, wait_s=chosen.wait_s,
        )  # fmt: skip

    return await audited(runtime, caller, request, {"pid": pid, **chosen.model_dump()}, work)


async def start_maintenance(
    runtime: Runtime, caller: Caller, request: Request, body: MaintenanceRequest
) -> Job:
    """Start the maintenance run ``body`` asks for as a job, audited."""

    def work(report: Any) -> dict[str, Any]:
        done = 0
        lock = threading.Lock()

        def on_done(operation: Operation) -> None:
            nonlocal done
            with lock:
                done += 1
                report(JobProgress(operation.command, done))

        result = runtime.with_connection(_autocommit, maintenance, body, on_done=on_done)
        return jsonable(MaintenanceReport, result)

    async def start() -> Job:
        return runtime.jobs.start(
            "maintenance", work, arguments=body.model_dump(), token_id=caller.token_id
        )

    return await audited(runtime, caller, request, body.model_dump(), start, outcome="started")


async def take_snapshot_audited(
    runtime: Runtime, caller: Caller, request: Request, keep_days: int | None
) -> history.Snapshot:
    """Take a snapshot of sizes and query statistics, audited."""

    async def work() -> history.Snapshot:
        taken = await runtime.call(history.snapshot, keep_days=keep_days, commit=True)
        runtime.forget("history")
        return taken

    return await audited(runtime, caller, request, {"keep_days": keep_days}, work)


def _autocommit(conn: Any, work: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``work`` on ``conn`` with no transaction left open around it."""
    conn.rollback()
    return work(conn, *args, **kwargs)
