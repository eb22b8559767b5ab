"""The beat: a Celery scheduler whose entries come from the config file's targets.

Each target's jobs become entries named ``<target>:<job>`` firing on their cron
expressions, plus the dead man's switch (``[tasks] deadman``). Every
``[tasks] reload_every`` seconds the scheduler looks at the config file; when it changed,
the entries are rebuilt (a target added, a schedule changed, one removed) while those
that did not change keep their last run. Time is :class:`~pgwarden.tasks.schedule.Clock`'s,
so a fast clock (``clock_speed``) runs the schedule faster for a demo or a test; each
task is sent the time its entry fired as ``scheduled_for``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from celery.beat import Scheduler
from celery.schedules import BaseSchedule, schedstate

from pgwarden.tasks.config import OFF, FleetConfig
from pgwarden.tasks.kinds import JOBS
from pgwarden.tasks.schedule import Clock, next_runs

__all__ = ["CronSchedule", "FleetScheduler", "beat_entries"]

log = logging.getLogger("pgwarden.tasks.beat")


class CronSchedule(BaseSchedule):  # type: ignore[misc]
    """A cron expression read by croniter, on a :class:`Clock` that may run fast."""

    def __init__(self, expression: str, clock: Clock, app: Any = None) -> None:
        self.expression = expression
        self.clock = clock
        super().__init__(nowfun=clock.now, app=app)

    def now(self) -> dt.datetime:
        """Return the time on the schedule's clock."""
        return self.clock.now()

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        """Return how long until the next run after ``last_run_at``, on the clock."""
        [following] = next_runs(self.expression, last_run_at)
        return following - self.now()

    def is_due(self, last_run_at: dt.datetime) -> Any:
        """Return whether a run fell due since ``last_run_at``, and the real seconds to wait."""
        now = self.now()
        [following] = next_runs(self.expression, last_run_at)
        if following <= now:
            [after] = next_runs(self.expression, now)
            return schedstate(True, self.clock.real_seconds(after - now))
        return schedstate(False, max(0.0, self.clock.real_seconds(following - now)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CronSchedule)
            and other.expression == self.expression
            and other.clock is self.clock
        )

    def __hash__(self) -> int:
        return hash(self.expression)

    def __repr__(self) -> str:
        return f"<cron {self.expression}>"

    def __reduce__(self) -> Any:
        return (self.__class__, (self.expression, self.clock, None))


def beat_entries(fleet: FleetConfig, clock: Clock) -> dict[str, dict[str, Any]]:
    """Return the beat entries of ``fleet``: one per target and scheduled job, and the switch."""
    entries: dict[str, dict[str, Any]] = {}
    for target in fleet.targets.values():
        for job, cron in target.schedule.items():
            if cron == OFF:
                continue
            entries[f"{target.name}:{job}"] = {
                "task": JOBS[job].task,
                "schedule": CronSchedule(cron, clock),
                "args": (target.name,),
            }
    if fleet.tasks.deadman != OFF:
        entries["pgwarden:overdue"] = {
            "task": "alerts.overdue",
            "schedule": CronSchedule(fleet.tasks.deadman, clock),
        }
    return entries


class FleetScheduler(Scheduler):  # type: ignore[misc]
    """The beat scheduler of ``pgwarden beat``: entries from the config, reloaded on change."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self.source = app.pgwarden_source
        fleet: FleetConfig = self.source.get()
        self.clock = Clock(fleet.tasks.clock_speed)
        self.reload_every = fleet.tasks.reload_every
        self._checked = time.monotonic()
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        """Fill the schedule from the config."""
        self.merge_inplace(beat_entries(self.source.get(), self.clock))
        log.info("beat: %d entries from %s", len(self.schedule), self.source.path)

    def tick(self, *args: Any, **kwargs: Any) -> Any:
        """Reload the entries if the config file changed, then run one tick."""
        if time.monotonic() - self._checked >= self.reload_every:
            self._checked = time.monotonic()
            if self.source.changed:
                try:
                    fleet = self.source.get()
                except Exception as exc:  # a bad edit: keep the schedule that works
                    log.error("beat: the config file is not valid, schedule kept: %s", exc)
                else:
                    self.merge_inplace(beat_entries(fleet, self.clock))
                    self._heap = None
                    log.warning("beat: config changed, %d entries now", len(self.schedule))
        return super().tick(*args, **kwargs)

    def _when(self, entry: Any, next_time_to_run: Any, mktime: Any = None) -> float:
        # Real seconds throughout: the clock's own time may run faster than the heap's.
        return time.time() + (self.adjust(next_time_to_run) or 0)

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send the entry's task, telling it when its schedule fired."""
        entry = self.reserve(entry) if advance else entry
        options = dict(entry.options)
        options.setdefault("headers", {})["celery_beat_task"] = True
        arguments = {**(entry.kwargs or {}), "scheduled_for": self.clock.now().isoformat()}
        return self.app.send_task(
            entry.task, tuple(entry.args or ()), arguments, producer=producer, **options
        )
