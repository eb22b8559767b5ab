"""The Celery app: one task per kind of job, each a call of :func:`~pgwarden.tasks.jobs.run_job`.

::

    from pgwarden.tasks.app import create_app

    app = create_app("pgwarden.toml")      # what `pgwarden worker` and `pgwarden beat` run
    app.send_task("backup.create", args=["app"])

Tasks: ``backup.create``, ``backup.verify``, ``backup.expire``, ``insight.snapshot``,
``doctor.run``, ``maintain.vacuum`` (each takes the target's name) and
``alerts.overdue`` (the dead man's switch), and ``pitr.check``, ``pitr.drill`` on the
targets with point-in-time recovery. Every task is acknowledged late and rejected back
to the queue if its worker dies (``acks_late``, ``reject_on_worker_lost``), so a job
whose worker was killed runs again on another; with a PostgreSQL broker, which loses
the message of a worker that dies whole, the surviving workers send such a job again
once its heartbeat stops (:mod:`pgwarden.tasks.recovery`); a
failure that may pass (a target that cannot be reached, a failed dump) is retried with
exponential backoff and full jitter; each kind has a time limit (``[tasks.time_limits]``).
Outcomes go to pgwarden's catalogue; Celery's result backend is not used.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from pgwarden._extras import importing_extra
from pgwarden.config import Settings, config_file_path, load_settings
from pgwarden.tasks.alerts import notifiers_for
from pgwarden.tasks.broker import broker_transport_options, broker_url, register_transport
from pgwarden.tasks.config import TASKS_PACKAGES, FleetConfig, load_fleet
from pgwarden.tasks.incidents import check_overdue
from pgwarden.tasks.jobs import JobOutcome, run_job
from pgwarden.tasks.kinds import JOBS
from pgwarden.tasks.recovery import start_recovery

__all__ = ["OVERDUE_TASK", "FleetSource", "create_app"]

OVERDUE_TASK = "alerts.overdue"


def _celery() -> Any:
    with importing_extra("tasks", "The worker and beat need {package}", TASKS_PACKAGES):
        import celery
    return celery


class FleetSource:
    """The fleet of the config file, read again when the file changes.

    Workers and beat both hold one, so a target added to the file is scheduled by beat
    and known to the workers without a restart.
    """

    def __init__(self, path: Path | None, fleet: FleetConfig | None = None) -> None:
        self.path = path
        self._fleet = fleet
        self._stamp = self._mtime()
        self._mutex = threading.Lock()

    def _mtime(self) -> float | None:
        try:
            return None if self.path is None else self.path.stat().st_mtime_ns / 1e9
        except OSError:
            return None

    def get(self) -> FleetConfig:
        """Return the fleet, reloaded if the file changed since it was read."""
        with self._mutex:
            stamp = self._mtime()
            if self._fleet is None or (stamp is not None and stamp != self._stamp):
                self._fleet = load_fleet(self.path)
                self._stamp = stamp
            return self._fleet

    @property
    def changed(self) -> bool:
        """Return whether the file changed since it was last read."""
        stamp = self._mtime()
        return stamp is not None and stamp != self._stamp


def _scheduled(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def create_app(
    config_file: Path | str | None = None,
    *,
    fleet: FleetConfig | None = None,
    settings: Settings | None = None,
) -> Any:
    """Return a Celery app for the fleet of ``config_file`` (the config in force by default).

    ``fleet`` and ``settings``, when given, are used instead of reading the file (the
    fleet is still reread when the file changes, if there is one).
    """
    celery = _celery()
    from celery.signals import worker_process_init, worker_ready, worker_shutdown
    from celery.utils.time import get_exponential_backoff_interval

    path = config_file_path(config_file)
    source = FleetSource(path, fleet)
    first = source.get()
    settings = settings or load_settings(path)
    tasks = first.tasks

    register_transport()
    app = celery.Celery("pgwarden", set_as_current=False)
    app.conf.update(
        broker_url=broker_url(tasks.broker, settings),
        broker_transport_options=broker_transport_options(tasks),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=tasks.queue,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_scheduler="pgwarden.tasks.beat:FleetScheduler",
        beat_max_loop_interval=max(1.0, min(60.0, 60.0 / tasks.clock_speed)),
    )
    app.pgwarden_source = source
    app.pgwarden_settings = settings

    @worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _fresh_engines(**_: Any) -> None:
        from pgwarden.tasks.catalogue import dispose_engines

        dispose_engines()  # a forked child must not share its parent's connections

    recovery_stop = threading.Event()

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def _watch_lost_jobs(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:  # this app's worker, in its main process
            start_recovery(source.get, app, recovery_stop)

    @worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def _stop_watching(**_: Any) -> None:
        recovery_stop.set()

    def make_task(job: str) -> Any:
        limit = tasks.time_limit(job)

        def run(self: Any, target: str, scheduled_for: str | None = None) -> dict[str, Any]:
            fleet_now = source.get()
            retries = fleet_now.tasks.retries

            def final(outcome: JobOutcome) -> bool:
                return not outcome.retry or self.request.retries >= retries

            outcome = run_job(
                fleet_now,
                settings,
                target,
                job,
                task_id=self.request.id,
                worker=self.request.hostname,
                attempt=self.request.retries,
                final=final,
                scheduled_for=_scheduled(scheduled_for),
                notifiers=notifiers_for(fleet_now.alerts),
            )
            if outcome.status == "failed" and not final(outcome):
                countdown = get_exponential_backoff_interval(
                    factor=fleet_now.tasks.retry_backoff,
                    retries=self.request.retries,
                    maximum=fleet_now.tasks.retry_backoff_max,
                    full_jitter=True,
                )
                raise self.retry(countdown=countdown, max_retries=retries)
            return {"status": outcome.status, "run_id": outcome.run_id, "error": outcome.error}

        run.__name__ = run.__qualname__ = f"{job}_task"
        run.__doc__ = f"Run {JOBS[job].summary} on one target."
        return app.task(
            name=JOBS[job].task,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            soft_time_limit=limit,
            time_limit=limit + 30,
            max_retries=None,
            ignore_result=True,
        )(run)

    for job in JOBS:
        make_task(job)

    @app.task(name=OVERDUE_TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
    def overdue(scheduled_for: str | None = None) -> list[str]:
        """Alert for each job that has not succeeded within its expected period."""
        fleet_now = source.get()
        now = _scheduled(scheduled_for) or dt.datetime.now(dt.UTC)
        return check_overdue(fleet_now, now, notifiers=notifiers_for(fleet_now.alerts))

    return app
