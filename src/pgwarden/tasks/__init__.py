"""Run pgwarden's jobs by themselves, for one database or a fleet: Celery tasks and beat.

- :mod:`pgwarden.tasks.config`: the ``[targets.NAME]``, ``[tasks]`` and ``[alerts]``
  tables of the config file (:func:`load_fleet`);
- :mod:`pgwarden.tasks.schedule`: the effective schedule and next runs
  (:func:`effective_schedule`);

Celery itself is imported only by :mod:`pgwarden.tasks.app` (the ``tasks`` extra).
See ``docs/tasks.md``.
"""

from __future__ import annotations

from pgwarden.tasks.config import (
    AlertsConfig,
    FleetConfig,
    Target,
    TasksConfig,
    Window,
    load_fleet,
    parse_fleet,
)
from pgwarden.tasks.errors import JobFailed, TargetsInvalid, UnknownTarget
from pgwarden.tasks.kinds import JOBS, JobKind
from pgwarden.tasks.schedule import Clock, ScheduledJob, effective_schedule, next_runs

__all__ = [
    "JOBS",
    "AlertsConfig",
    "Clock",
    "FleetConfig",
    "JobFailed",
    "JobKind",
    "ScheduledJob",
    "Target",
    "TargetsInvalid",
    "TasksConfig",
    "UnknownTarget",
    "Window",
    "effective_schedule",
    "load_fleet",
    "next_runs",
    "parse_fleet",
]
