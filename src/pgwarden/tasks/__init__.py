"""Run pgwarden's jobs by themselves, for one database or a fleet: Celery tasks and beat.

- :mod:`pgwarden.tasks.config`: the ``[targets.NAME]``, ``[tasks]`` and ``[alerts]``
  tables of the config file (:func:`load_fleet`);
- :mod:`pgwarden.tasks.schedule`: the effective schedule and next runs
  (:func:`effective_schedule`);
- :mod:`pgwarden.tasks.jobs`: one job on one target, locked, recorded, alerting
  (:func:`run_job`);
- :mod:`pgwarden.tasks.catalogue`: the runs and incidents in ``pgwarden.task_run`` and
  ``pgwarden.task_incident``;
- :mod:`pgwarden.tasks.alerts`: the notifiers (log, webhook, SMTP);
- :mod:`pgwarden.tasks.fleet`: every target at a glance (:func:`fleet_status`);
- :mod:`pgwarden.tasks.app` and :mod:`pgwarden.tasks.beat`: the Celery app and its
  scheduler, imported only there (the ``tasks`` extra).

See ``docs/tasks.md``.
"""

from __future__ import annotations

from pgwarden.tasks.alerts import (
    Alert,
    LogNotifier,
    Notifier,
    SmtpNotifier,
    WebhookNotifier,
    notifiers_for,
)
from pgwarden.tasks.catalogue import Incident, JobRun
from pgwarden.tasks.config import (
    AlertsConfig,
    FleetConfig,
    Target,
    TasksConfig,
    Window,
    load_fleet,
    parse_fleet,
)
from pgwarden.tasks.errors import TargetsInvalid, UnknownTarget
from pgwarden.tasks.fleet import JobStatus, TargetStatus, fleet_status
from pgwarden.tasks.jobs import JobOutcome, run_job
from pgwarden.tasks.kinds import JOBS, JobKind
from pgwarden.tasks.schedule import Clock, ScheduledJob, effective_schedule, next_runs

__all__ = [
    "JOBS",
    "Alert",
    "AlertsConfig",
    "Clock",
    "FleetConfig",
    "Incident",
    "JobKind",
    "JobOutcome",
    "JobRun",
    "JobStatus",
    "LogNotifier",
    "Notifier",
    "ScheduledJob",
    "SmtpNotifier",
    "Target",
    "TargetStatus",
    "TargetsInvalid",
    "TasksConfig",
    "UnknownTarget",
    "WebhookNotifier",
    "Window",
    "effective_schedule",
    "fleet_status",
    "load_fleet",
    "next_runs",
    "notifiers_for",
    "parse_fleet",
    "run_job",
]
