"""The state of a fleet at a glance: per target, how its jobs went and what can be restored.

:func:`fleet_status` reads the catalogue (the last success and the last failure of each
job, the open incidents), the schedule (each job's next run) and each target's backup
storage (the newest backup, the newest verified one, the window of time the complete
backups cover). A catalogue or a storage that cannot be read is reported in the
target's ``problems``, never raised: the view of a fleet must show the broken parts too.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field

from pgwarden.backup import list_backups
from pgwarden.config import Settings
from pgwarden.errors import PgwardenError
from pgwarden.tasks import catalogue
from pgwarden.tasks.config import OFF, FleetConfig, Target
from pgwarden.tasks.jobs import target_storage
from pgwarden.tasks.kinds import JOBS
from pgwarden.tasks.schedule import next_runs

__all__ = ["JobStatus", "TargetStatus", "fleet_status"]


@dataclass(frozen=True)
class JobStatus:
    """One job of one target: its schedule, its last success and its last failure."""

    job: str
    cron: str
    last_success: dt.datetime | None = None
    last_success_s: float | None = None
    last_failure: dt.datetime | None = None
    last_error: str | None = None
    next_run: dt.datetime | None = None  # None when the job is off

    @property
    def state(self) -> str:
        """Return ``failing``, ``ok``, ``never run`` or ``off`` (off and never run)."""
        if self.failing:
            return "failing"
        if self.last_success is not None:
            return "ok"
        return "off" if self.cron == OFF else "never run"

    @property
    def failing(self) -> bool:
        """Return whether the job failed after its last success (or never succeeded)."""
        if self.last_failure is None:
            return False
        return self.last_success is None or self.last_failure > self.last_success


@dataclass(frozen=True)
class TargetStatus:
    """What a person on call wants to know about one target."""

    target: str
    url: str
    jobs: list[JobStatus]
    newest_backup: str | None = None
    newest_backup_at: dt.datetime | None = None
    newest_verified: str | None = None
    newest_verified_at: dt.datetime | None = None
    recoverable_from: dt.datetime | None = None
    recoverable_to: dt.datetime | None = None
    complete_backups: int = 0
    incidents: list[catalogue.Incident] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def critical_findings(self) -> list[str]:
        """Return the open critical findings of the doctor, as messages."""
        return [i.message for i in self.incidents if i.kind == "finding"]

    @property
    def healthy(self) -> bool:
        """Return whether nothing is open, failing or unreadable."""
        return not (self.incidents or self.problems or any(j.failing for j in self.jobs))


def _next_run(cron: str, now: dt.datetime) -> dt.datetime | None:
    if importlib.util.find_spec("croniter") is None:  # the tasks extra: not there to read
        return None
    return next(iter(next_runs(cron, now)), None)


def _jobs(target: Target, runs: Iterable[catalogue.JobRun], now: dt.datetime) -> list[JobStatus]:
    last: dict[tuple[str, str], catalogue.JobRun] = {(r.job, r.status): r for r in runs}
    jobs = []
    for job in JOBS:
        ok, failed = last.get((job, "ok")), last.get((job, "failed"))
        jobs.append(
            JobStatus(
                job=job,
                cron=target.schedule[job],
                last_success=ok.ended_at if ok else None,
                last_success_s=ok.duration_s if ok else None,
                last_failure=failed.ended_at if failed else None,
                last_error=failed.error if failed else None,
                next_run=_next_run(target.schedule[job], now),
            )
        )
    return jobs


def _status(fleet: FleetConfig, settings: Settings, target: Target) -> TargetStatus:
    problems: list[str] = []
    runs: list[catalogue.JobRun] = []
    incidents: list[catalogue.Incident] = []
    try:
        with catalogue.catalogue(fleet.tasks.catalogue_url or target.url) as conn:
            runs = catalogue.last_runs(conn, target=target.name)
            incidents = catalogue.open_incidents(conn, target=target.name)
    except PgwardenError as exc:
        problems.append(f"catalogue: {exc.message}")
    except Exception as exc:  # a database error: shown, not raised
        problems.append(f"catalogue: {type(exc).__name__}")
    backups = {}
    try:
        entries = list_backups(target_storage(target, settings), database=target.database)
        complete = [e for e in entries if e.complete]
        verified = [e for e in complete if e.verification is not None and e.verification.ok]
        backups = {
            "complete_backups": len(complete),
            "newest_backup": complete[0].id if complete else None,
            "newest_backup_at": complete[0].started_at if complete else None,
            "newest_verified": verified[0].id if verified else None,
            "newest_verified_at": verified[0].started_at if verified else None,
            "recoverable_from": complete[-1].started_at if complete else None,
            "recoverable_to": complete[0].started_at if complete else None,
        }
    except PgwardenError as exc:
        problems.append(f"storage: {exc.message}")
    return TargetStatus(
        target=target.name,
        url=target.display_url,
        jobs=_jobs(target, runs, dt.datetime.now(dt.UTC)),
        incidents=incidents,
        problems=problems,
        **backups,  # type: ignore[arg-type]
    )


def fleet_status(
    fleet: FleetConfig, settings: Settings, *, targets: Iterable[str] | None = None
) -> list[TargetStatus]:
    """Return the status of each target (those named, or all), in name order."""
    chosen = sorted(fleet.targets) if targets is None else [fleet.target(t).name for t in targets]
    return [_status(fleet, settings, fleet.targets[name]) for name in chosen]
