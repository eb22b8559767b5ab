"""The effective schedule of a fleet: each target's jobs, their cron expressions, next runs.

Times are computed in UTC. :class:`Clock` is the time the schedule runs by: real time,
or a clock running ``speed`` times faster from the moment it was made, for a demo or a
test that needs a week of schedule in minutes (``[tasks] clock_speed``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pgwarden.tasks.config import OFF, FleetConfig, Target
from pgwarden.tasks.kinds import JOBS

__all__ = [
    "Clock",
    "ScheduledJob",
    "effective_schedule",
    "next_runs",
    "period",
    "previous_run",
]


class Clock:
    """Tell the time the schedule runs by: real time, or ``speed`` times faster.

    A fast clock starts at the real time of its making and runs ``speed`` virtual
    seconds per real second: :meth:`real_seconds` turns a virtual span into a wait.
    """

    def __init__(self, speed: float = 1.0, *, start: datetime | None = None) -> None:
        self.speed = speed
        self._origin = start or datetime.now(UTC)
        self._real_origin = time.monotonic()

    def now(self) -> datetime:
        """Return the current time on this clock, timezone-aware (UTC)."""
        if self.speed == 1.0:
            return datetime.now(UTC)
        elapsed = (time.monotonic() - self._real_origin) * self.speed
        return self._origin + timedelta(seconds=elapsed)

    def real_seconds(self, span: timedelta) -> float:
        """Return how many real seconds ``span`` of this clock's time lasts."""
        return span.total_seconds() / self.speed


def next_runs(expression: str, after: datetime, count: int = 1) -> list[datetime]:
    """Return the next ``count`` times ``expression`` fires after ``after`` (UTC)."""
    if expression == OFF:
        return []
    from croniter import croniter

    it = croniter(expression, after.astimezone(UTC))
    return [it.get_next(datetime).astimezone(UTC) for _ in range(count)]


def previous_run(expression: str, before: datetime) -> datetime:
    """Return the last time ``expression`` fired at or before ``before``."""
    from croniter import croniter

    it = croniter(expression, before.astimezone(UTC) + timedelta(seconds=1))
    moment: datetime = it.get_prev(datetime)
    return moment.astimezone(UTC)


def period(expression: str, at: datetime) -> timedelta:
    """Return the span between the run before ``at`` and the one after: the job's period."""
    [following] = next_runs(expression, at)
    return following - previous_run(expression, at)


@dataclass(frozen=True)
class ScheduledJob:
    """One job of one target: its cron expression (or ``off``) and its next runs."""

    target: str
    job: str
    task: str
    cron: str
    next_runs: tuple[datetime, ...]
    time_limit_s: float
    windows: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Return whether the job is scheduled at all."""
        return self.cron != OFF


def effective_schedule(
    fleet: FleetConfig,
    *,
    targets: Iterable[str] | None = None,
    now: datetime | None = None,
    count: int = 1,
) -> list[ScheduledJob]:
    """Return every job of the targets named (all by default), with the next ``count`` runs.

    An unknown target is a :class:`~pgwarden.tasks.errors.UnknownTarget`.
    """
    now = now or datetime.now(UTC)
    chosen: list[Target] = (
        list(fleet.targets.values())
        if targets is None
        else [fleet.target(name) for name in targets]
    )
    jobs = []
    for target in chosen:
        for job, kind in JOBS.items():
            cron = target.schedule[job]
            jobs.append(
                ScheduledJob(
                    target=target.name,
                    job=job,
                    task=kind.task,
                    cron=cron,
                    next_runs=tuple(next_runs(cron, now, count)),
                    time_limit_s=fleet.tasks.time_limit(job),
                    windows=tuple(str(w) for w in target.windows) if job == "vacuum" else (),
                )
            )
    return jobs
