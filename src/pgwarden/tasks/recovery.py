"""Send again the jobs whose whole worker died, on a broker that does not (PostgreSQL).

Redis gives a message whose worker vanished to another after its visibility timeout, and
RabbitMQ at once. kombu's SQLAlchemy transport (the PostgreSQL and embedded brokers)
deletes a message when a worker fetches it: if the worker's pool child dies, the worker
sends the job back itself (``reject_on_worker_lost``), but if the whole worker dies (a
host lost, SIGKILL to all its processes), the job is gone.

pgwarden's catalogue stands in for the visibility timeout: a running job beats its
``task_run`` row's ``heartbeat_at`` every ``[tasks] heartbeat`` seconds (10 s), and every
worker looks, every ``heartbeat`` seconds, for ``running`` rows silent for
``[tasks] lost_after`` (60 s): :func:`recover_lost_runs` marks each ``lost`` (one
statement, so of several workers only one claims it) and sends its task again under the
same task id, target and scheduled time. The job's own per-target lock still keeps two
runs of it apart, should the first be alive after all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from pgwarden.errors import PgwardenError
from pgwarden.tasks import catalogue
from pgwarden.tasks.catalogue import JobRun
from pgwarden.tasks.config import FleetConfig
from pgwarden.tasks.kinds import JOBS

__all__ = ["needs_recovery", "recover_lost_runs", "start_recovery"]

log = logging.getLogger("pgwarden.tasks")


def needs_recovery(fleet: FleetConfig) -> bool:
    """Return whether the broker loses the jobs of a worker that dies whole."""
    scheme = fleet.tasks.broker.partition("://")[0].lower()
    return fleet.tasks.broker == "embedded" or scheme.startswith("postgres")


def _catalogues(fleet: FleetConfig) -> list[str]:
    if fleet.tasks.catalogue_url is not None:
        return [fleet.tasks.catalogue_url]
    return sorted({target.url for target in fleet.targets.values()})


def recover_lost_runs(fleet: FleetConfig, send: Callable[[JobRun], Any]) -> list[JobRun]:
    """Claim the runs whose heartbeat stopped ``lost_after`` ago; ``send`` each again."""
    recovered: list[JobRun] = []
    for url in _catalogues(fleet):
        try:
            with catalogue.catalogue(url) as conn:
                lost = catalogue.claim_lost_runs(conn, silent_for=fleet.tasks.lost_after)
        except (PgwardenError, DBAPIError) as exc:  # a target down: its catalogue waits
            log.info("cannot look for lost jobs in a catalogue: %s", exc)
            continue
        for run in lost:
            if run.job not in JOBS:
                continue
            log.warning(
                "job %s on %s (task %s) lost its worker %s; sending it again",
                run.job, run.target, run.task_id, run.worker,
            )  # fmt: skip
            send(run)
            recovered.append(run)
    return recovered


def start_recovery(
    source: Callable[[], FleetConfig], app: Any, stop: threading.Event
) -> threading.Thread:
    """Look for lost jobs every ``[tasks] heartbeat`` seconds on a thread, until ``stop``."""

    def send(run: JobRun) -> None:
        scheduled = run.scheduled_for.isoformat() if run.scheduled_for else None
        app.send_task(
            JOBS[run.job].task,
            args=(run.target,),
            kwargs={"scheduled_for": scheduled},
            task_id=run.task_id,
        )

    def loop() -> None:
        while True:
            fleet = source()
            if stop.wait(max(1.0, fleet.tasks.heartbeat)):
                return
            try:
                if needs_recovery(fleet):
                    recover_lost_runs(fleet, send)
            except Exception:  # never the end of the worker's watch
                log.exception("looking for lost jobs failed; trying again later")

    thread = threading.Thread(target=loop, name="pgwarden-recovery", daemon=True)
    thread.start()
    return thread
