"""The read routes: health, the doctor's summary and findings, queries, sessions, space.

Each route calls one library function in a worker thread and answers with what it
returns. The doctor's report is shared by ``/summary`` and ``/findings`` and computed
at most once per ``summary_ttl_s``; the readiness ping once per ``readiness_ttl_s``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pgwarden.api._edge import ErrorBody, error_message
from pgwarden.api._examples import EXAMPLES
from pgwarden.api._runtime import Runtime
from pgwarden.api._schemas import list_of, model_of, respond
from pgwarden.db.ping import PingResult, ping
from pgwarden.insight import history
from pgwarden.insight.activity import ServerSession, sessions
from pgwarden.insight.blocking import BlockedQuery, blocked_queries
from pgwarden.insight.connections import ConnectionUsage, connection_usage
from pgwarden.insight.doctor import DoctorReport, doctor
from pgwarden.insight.findings import Finding, Severity
from pgwarden.insight.indexes import (
    DuplicateIndex,
    UnusedIndex,
    duplicate_indexes,
    unused_indexes,
)
from pgwarden.insight.sizes import (
    DatabaseSize,
    IndexSize,
    TableSize,
    database_sizes,
    index_sizes,
    table_sizes,
)
from pgwarden.insight.statements import (
    QueryStats,
    queries_by_calls,
    queries_by_mean_time,
    queries_by_total_time,
    slow_queries,
)

__all__ = ["add_monitoring_routes", "doctor_report", "summary_of"]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 429, 500, 503)
}


class Liveness(BaseModel):
    """The process answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["Liveness"]]})

    status: Literal["ok"] = Field(examples=["ok"])


class Readiness(BaseModel):
    """The database answers, and how fast."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["Readiness"]]})

    status: Literal["ready", "unavailable"] = Field(examples=["ready"])
    database: str | None = Field(default=None, examples=["app"])
    server_version: str | None = Field(default=None, examples=["17.2"])
    latency_ms: float | None = Field(default=None, examples=[0.4])
    error: str | None = None


class SkippedCheck(BaseModel):
    """A check that could not run here, and why."""

    check: str
    reason: str


class FailedCheck(BaseModel):
    """A check that stopped on an error."""

    check: str
    error: str


class Summary(BaseModel):
    """The doctor's last run over the database, counted by severity and by check."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["Summary"]]})

    database: str = Field(examples=["app"])
    server_version: str = Field(examples=["17.2"])
    checked_at: dt.datetime
    duration_s: float = Field(examples=[0.42])
    checks_run: int = Field(examples=[31])
    counts: dict[str, int] = Field(examples=[{"critical": 0, "warning": 2, "info": 5}])
    by_check: dict[str, int] = Field(examples=[{"unused_indexes": 2}])
    skipped: list[SkippedCheck]
    failed: list[FailedCheck]


class History(BaseModel):
    """The stored snapshots, oldest first: the series the growth charts draw."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["History"]]})

    snapshots: list[model_of(history.Snapshot)]  # type: ignore[valid-type]


async def doctor_report(runtime: Runtime) -> DoctorReport:
    """Return the doctor's report, run at most once per ``summary_ttl_s``.

    A report expired less than ``summary_stale_s`` ago is served while a run refreshes it.
    """

    async def compute() -> DoctorReport:
        return await runtime.call(doctor)

    ttl = runtime.options.summary_ttl_s
    # Served stale while one run refreshes it: no request waits for the doctor once warm.
    return await runtime.cached("doctor", ttl, compute, stale_s=runtime.options.summary_stale_s)


def summary_of(report: DoctorReport) -> Summary:
    """Return the summary of ``report``."""
    by_check: dict[str, int] = {}
    for finding in report.findings:
        by_check[finding.check] = by_check.get(finding.check, 0) + 1
    return Summary(
        database=report.database,
        server_version=report.server_version,
        checked_at=report.started_at,
        duration_s=report.duration_s,
        checks_run=len(report.results),
        counts=report.counts,
        by_check=by_check,
        skipped=[SkippedCheck(check=r.check, reason=r.skipped or "") for r in report.skipped],
        failed=[FailedCheck(check=r.check, error=r.error or "") for r in report.failed],
    )


def _snapshots(conn: Any, *, limit: int) -> list[history.Snapshot]:
    return list(reversed(history.snapshots(conn, limit=limit)))


def add_monitoring_routes(router: APIRouter, runtime: Runtime, read: Any) -> None:
    """Add the read routes to ``router``; ``read`` is the dependency admitting readers."""
    reader = [Depends(read)]

    @router.get("/health", response_model=Liveness, tags=["health"], summary="Liveness")
    async def health() -> Liveness:
        """Answer without touching the database: the process is alive. No token needed."""
        return Liveness(status="ok")

    @router.get(
        "/health/ready",
        response_model=Readiness,
        tags=["health"],
        summary="Readiness",
        responses={503: {"model": Readiness}},
    )
    async def ready() -> Any:
        """Ping the database (at most once per ``readiness_ttl_s``). No token needed."""

        async def compute() -> Readiness:
            try:
                result: PingResult = await runtime.call(ping, samples=1)
            except Exception as error:  # any failure means "not ready", said plainly
                return Readiness(status="unavailable", error=error_message(error))
            return Readiness(
                status="ready",
                database=result.database,
                server_version=result.server_version,
                latency_ms=round(result.latency_ms, 3),
            )

        answer = await runtime.cached("ready", runtime.options.readiness_ttl_s, compute)
        if answer.status != "ready":
            return JSONResponse(answer.model_dump(), status_code=503)
        return answer

    @router.get("/summary", response_model=Summary, tags=["doctor"], dependencies=reader,
                responses=ERRORS)  # fmt: skip
    async def summary() -> Response:
        """Return the doctor's findings counted by severity and check (cached briefly)."""
        report = await doctor_report(runtime)
        # Rendered once per report: a cached answer costs no validation or encoding.
        body = runtime.derived(
            "summary", report, lambda: summary_of(report).model_dump_json().encode()
        )
        return Response(body, media_type="application/json")

    @router.get("/findings", response_model=list_of(Finding), tags=["doctor"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def findings(
        severity: Severity = Query("info", description="This severity or more serious."),
        check: str | None = Query(None, description="Only the findings of this check."),
    ) -> Any:
        """Return the doctor's findings, most serious first, each with its fix."""
        report = await doctor_report(runtime)
        found = [f for f in report.findings_at(severity) if check is None or f.check == check]
        return respond(Finding, found, many=True)

    @router.get("/statements", response_model=list_of(QueryStats), tags=["queries"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def statements(
        order: Literal["total", "mean", "calls"] = "total",
        limit: int = Query(20, ge=1, le=1000),
    ) -> Any:
        """Return the statements of ``pg_stat_statements`` by total time, mean time or calls."""
        function = {
            "total": queries_by_total_time,
            "mean": queries_by_mean_time,
            "calls": queries_by_calls,
        }[order]
        return respond(QueryStats, await runtime.call(function, limit=limit), many=True)

    @router.get("/statements/slow", response_model=list_of(QueryStats),
                tags=["queries"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def slow(
        min_mean_ms: float = Query(100.0, ge=0, le=1e12),
        min_calls: int = Query(10, ge=0, le=2**62),
        limit: int = Query(50, ge=1, le=1000),
    ) -> Any:
        """Return the statements averaging ``min_mean_ms`` or more over ``min_calls`` calls."""
        found = await runtime.call(
            slow_queries, min_mean_ms=min_mean_ms, min_calls=min_calls, limit=limit
        )
        return respond(QueryStats, found, many=True)

    @router.get("/sessions", response_model=list_of(ServerSession), tags=["sessions"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def running_sessions(
        running: bool = Query(False, description="Only sessions running a query now."),
        min_duration_s: float = Query(0.0, ge=0, le=1e9),
    ) -> Any:
        """Return this database's sessions running a query or in a transaction, longest first."""
        found = await runtime.call(sessions, running=running, min_duration_s=min_duration_s)
        return respond(ServerSession, found, many=True)

    @router.get("/sessions/blocked", response_model=list_of(BlockedQuery),
                tags=["sessions"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def blocked(min_wait_s: float = Query(0.0, ge=0, le=1e9)) -> Any:
        """Return the queries waiting for a lock, with the sessions blocking them."""
        found = await runtime.call(blocked_queries, min_wait_s=min_wait_s)
        return respond(BlockedQuery, found, many=True)

    @router.get("/connections", response_model=model_of(ConnectionUsage),
                tags=["sessions"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def connections() -> Any:
        """Return the server's client connections by state and source, against its slots."""
        return respond(ConnectionUsage, await runtime.call(connection_usage))

    @router.get("/space/databases", response_model=list_of(DatabaseSize),
                tags=["space"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def databases(limit: int = Query(50, ge=1, le=10_000)) -> Any:
        """Return the server's databases by size, largest first."""
        return respond(DatabaseSize, await runtime.call(database_sizes, limit=limit), many=True)

    @router.get("/space/tables", response_model=list_of(TableSize),
                tags=["space"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def tables(limit: int = Query(20, ge=1, le=10_000)) -> Any:
        """Return the largest tables, split into heap, TOAST and indexes."""
        return respond(TableSize, await runtime.call(table_sizes, limit=limit), many=True)

    @router.get("/space/indexes", response_model=list_of(IndexSize),
                tags=["space"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def index_space(limit: int = Query(20, ge=1, le=10_000)) -> Any:
        """Return the largest indexes."""
        return respond(IndexSize, await runtime.call(index_sizes, limit=limit), many=True)

    @router.get("/space/history", response_model=History, tags=["space"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def space_history(limit: int = Query(100, ge=1, le=10_000)) -> Any:
        """Return the stored snapshots, oldest first, with the database's size in each."""
        found = await runtime.call(_snapshots, limit=limit)
        return {"snapshots": respond(history.Snapshot, found, many=True)}

    @router.get("/space/growth", response_model=list_of(history.RelationGrowth),
                tags=["space"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def growth(
        days: float | None = Query(None, gt=0, le=1e6),
        limit: int = Query(20, ge=1, le=10_000),
    ) -> Any:
        """Return the tables and indexes that grew most between two snapshots."""
        found = await runtime.call(history.growth, days=days, limit=limit)
        return respond(history.RelationGrowth, found, many=True)

    @router.get("/indexes/unused", response_model=list_of(UnusedIndex),
                tags=["indexes"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def unused(
        max_scans: int = Query(0, ge=0, le=2**62),
        min_size_bytes: int = Query(0, ge=0, le=2**62),
    ) -> Any:
        """Return the indexes scanned at most ``max_scans`` times since statistics were reset."""
        found = await runtime.call(
            unused_indexes, max_scans=max_scans, min_size_bytes=min_size_bytes
        )
        return respond(UnusedIndex, found, many=True)

    @router.get("/indexes/duplicates", response_model=list_of(DuplicateIndex),
                tags=["indexes"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def duplicates() -> Any:
        """Return the indexes another index makes redundant."""
        return respond(DuplicateIndex, await runtime.call(duplicate_indexes), many=True)

    @router.get("/metrics", tags=["metrics"], dependencies=reader,
                responses={200: {"content": {"text/plain": {}}}, **ERRORS})  # fmt: skip
    async def metrics() -> Response:
        """Return the Prometheus metrics of the engines published to the default registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        from pgwarden.observe.metrics import metrics_text

        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)
