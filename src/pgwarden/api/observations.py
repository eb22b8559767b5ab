"""The routes of what instrumented applications saw, of the fleet, and of the WAL archive.

- ``/observe/nplusone`` and ``/observe/slow``: the N+1 patterns and slow statements an
  application instrumented with :func:`pgwarden.observe.instrument` found; what this
  process saw (the router mounted in the application) and what is stored in the
  database (``instrument(engine, store_reports=True)``, for ``pgwarden serve`` apart);
- ``/fleet``: each target of the scheduled jobs (``[targets.NAME]`` of the config file),
  as ``pgwarden fleet status`` shows it, with each job's next run;
- ``/pitr``: the recoverable window of the WAL archive in the backup storage.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query

from pgwarden.api._runtime import Runtime
from pgwarden.api._schemas import list_of, model_of, respond
from pgwarden.api.monitoring import ERRORS
from pgwarden.backup.pitr_status import PitrStatus, pitr_status
from pgwarden.errors import NotEnabled
from pgwarden.observe.reports import (
    NPlusOneReport,
    SlowStatementReport,
    nplusone_reports,
    slow_statement_reports,
)
from pgwarden.tasks.fleet import TargetStatus

__all__ = ["add_observation_routes", "fleet_targets", "pitr_window"]

_TARGET = Path(min_length=1, max_length=200, description="A [targets.NAME] of the config.")


def fleet_targets(runtime: Runtime, *, target: str | None = None) -> list[TargetStatus]:
    """Return ``fleet_status`` of the fleet configured for the API (blocking: a thread's work).

    Of every target, or of ``target`` alone (:class:`~pgwarden.tasks.UnknownTarget` if
    the config names none so); :class:`~pgwarden.errors.NotEnabled` when no config file
    names targets.
    """
    from pgwarden.config import config_file_path
    from pgwarden.tasks.config import load_fleet
    from pgwarden.tasks.fleet import fleet_status

    path = config_file_path(runtime.options.fleet_config)
    if path is None or not path.exists():
        raise NotEnabled(
            "no fleet of scheduled jobs is configured for this API.",
            hint="Name the config file with [targets.NAME] tables: PGWARDEN_CONFIG, "
            "./pgwarden.toml, or ApiOptions(fleet_config=...).",
        )
    chosen = None if target is None else [target]
    return fleet_status(load_fleet(path), runtime.settings, targets=chosen)


def pitr_window(runtime: Runtime) -> PitrStatus:
    """Return the WAL archive's recoverable window (blocking); NotEnabled with no archive."""
    from pgwarden.backup.crypto import BackupKeyring

    keyring = None
    if runtime.settings.encryption_keys:
        keyring = BackupKeyring.from_settings(runtime.settings)
    status = pitr_status(runtime.storage(), keyring=keyring)
    if not status.base_backups and not status.archived_files:
        raise NotEnabled(
            "the backup storage holds no WAL archive of this cluster.",
            hint="Set up continuous archiving: `pgwarden pitr setup` (see docs/pitr.md).",
        )
    return status


def add_observation_routes(router: APIRouter, runtime: Runtime, read: Any) -> None:
    """Add the observation, fleet and PITR routes to ``router``."""
    reader = [Depends(read)]

    @router.get("/observe/nplusone", response_model=list_of(NPlusOneReport),
                tags=["observe"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def nplusone(limit: int = Query(100, ge=1, le=1000)) -> Any:
        """Return the N+1 patterns instrumented applications found, most recent first.

        Each names the line that ran the extra queries and the loader option that fixes
        them; what this process saw and what applications stored in the database.
        """
        found = await runtime.call(nplusone_reports, limit=limit)
        return respond(NPlusOneReport, found, many=True)

    @router.get("/observe/slow", response_model=list_of(SlowStatementReport),
                tags=["observe"], dependencies=reader, responses=ERRORS)  # fmt: skip
    async def slow(limit: int = Query(100, ge=1, le=1000)) -> Any:
        """Return the statements instrumented applications ran slowly, slowest p95 first."""
        found = await runtime.call(slow_statement_reports, limit=limit)
        return respond(SlowStatementReport, found, many=True)

    @router.get("/fleet", response_model=list_of(TargetStatus), tags=["fleet"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def fleet() -> Any:
        """Return each target of the scheduled jobs: its jobs' last and next runs, incidents."""

        async def compute() -> Any:
            return respond(TargetStatus, await runtime.in_thread(fleet_targets, runtime), many=True)

        return await runtime.cached("fleet", 2.0, compute)

    @router.get("/fleet/{target}", response_model=model_of(TargetStatus), tags=["fleet"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def fleet_target(target: str = _TARGET) -> Any:
        """Return one target of the scheduled jobs: its jobs' last and next runs, incidents."""
        [found] = await runtime.in_thread(fleet_targets, runtime, target=target)
        return respond(TargetStatus, found)

    @router.get("/pitr", response_model=model_of(PitrStatus), tags=["backups"],
                dependencies=reader, responses=ERRORS)  # fmt: skip
    async def pitr() -> Any:
        """Return the WAL archive's recoverable window: base backups, WAL, gaps, last drill."""

        async def compute() -> Any:
            return respond(PitrStatus, await runtime.in_thread(pitr_window, runtime))

        return await runtime.cached("backups-pitr", 2.0, compute)
