"""Turn job outcomes into incidents, and incidents into one alert each way.

- a final failure opens ``unreachable`` (the target could not be reached) or
  ``job:<kind>`` (anything else); a success closes both;
- a doctor run opens ``finding:<check>:<subject>`` for each critical finding not open
  yet, and closes those it no longer finds;
- :func:`check_overdue` opens ``overdue:<kind>`` for a job whose last success is older
  than ``overdue_factor`` periods of its schedule (a dead man's switch), closed by the
  next success.

An incident opens and closes with a conditional write in the catalogue, so of many
workers exactly one sends each message. Without a reachable catalogue (it is the
target, and the target is down) every final failure alerts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from pgwarden.tasks import catalogue
from pgwarden.tasks.alerts import Alert, AlertState, Notifier, send_alert
from pgwarden.tasks.config import OFF, FleetConfig
from pgwarden.tasks.schedule import period

if TYPE_CHECKING:
    from pgwarden.tasks.jobs import JobOutcome

__all__ = ["after_run", "check_overdue"]

_FAILURE_KINDS = {"backup": "backup failed", "verify": "backup verification failed"}


def _announce(
    notifiers: Sequence[Notifier],
    incident: catalogue.Incident | None,
    state: AlertState,
    details: dict[str, Any] | None = None,
) -> list[str]:
    if incident is None:
        return []
    message = incident.message if state == "open" else f"cleared: {incident.message}"
    alert = Alert(
        incident.target, incident.key, incident.kind, state, message, details=details or {}
    )
    send_alert(notifiers, alert)
    return [f"{state} {incident.key}"]


def _open(
    conn: Connection | None,
    notifiers: Sequence[Notifier],
    target: str,
    key: str,
    kind: str,
    message: str,
    details: dict[str, Any],
) -> list[str]:
    if conn is None:
        now = dt.datetime.now(dt.UTC)
        unrecorded = catalogue.Incident(0, target, key, kind, message, now, None)
        return _announce(notifiers, unrecorded, "open", details)
    incident = catalogue.open_incident(conn, target=target, key=key, kind=kind, message=message)
    return _announce(notifiers, incident, "open", details)


def _close(
    conn: Connection | None, notifiers: Sequence[Notifier], target: str, *keys: str
) -> list[str]:
    if conn is None:
        return []
    said: list[str] = []
    for incident in catalogue.close_incidents(conn, target=target, keys=list(keys)):
        said += _announce(notifiers, incident, "recovered")
    return said


def after_run(
    conn: Connection | None,
    fleet: FleetConfig,
    outcome: JobOutcome,
    *,
    final: bool,
    notifiers: Sequence[Notifier],
) -> list[str]:
    """Open or close the incidents ``outcome`` bears on; return what was announced."""
    target, job = outcome.target, outcome.job
    said: list[str] = []
    if outcome.status == "ok":
        said += _close(conn, notifiers, target, "unreachable", f"job:{job}", f"overdue:{job}")
        if job == "doctor":
            said += _findings(conn, notifiers, target, outcome.detail.get("critical", []))
    elif outcome.status == "failed" and final:
        details = {"job": job, "error": outcome.error, "error_type": outcome.error_type}
        if outcome.error_type == "ConnectionFailed":
            message = f"{target} cannot be reached: {outcome.error}"
            said += _open(conn, notifiers, target, "unreachable", "unreachable", message, details)
        else:
            what = _FAILURE_KINDS.get(job, f"{job} failed")
            message = f"{what} on {target}: {outcome.error}"
            said += _open(conn, notifiers, target, f"job:{job}", "job_failed", message, details)
    return said


def _findings(
    conn: Connection | None,
    notifiers: Sequence[Notifier],
    target: str,
    critical: list[dict[str, Any]],
) -> list[str]:
    said: list[str] = []
    current = {f"finding:{f['check']}:{f['subject'] or ''}": f for f in critical}
    for key, finding in current.items():
        message = f"critical finding on {target}: {finding['what']}"
        said += _open(conn, notifiers, target, key, "finding", message, dict(finding))
    if conn is not None:
        for incident in catalogue.open_incidents(conn, target=target, prefix="finding:"):
            if incident.key not in current:
                said += _close(conn, notifiers, target, incident.key)
    return said


def check_overdue(
    fleet: FleetConfig,
    now: dt.datetime,
    *,
    notifiers: Sequence[Notifier],
) -> list[str]:
    """Open an incident for each job whose last success is too old; return what was sent.

    A job is overdue when its last success (by the time its schedule fired) is more than
    ``overdue_factor`` periods before ``now``. A job that never ran is not: the first
    run is the schedule's to make. Needs a catalogue per target or a shared one.
    """
    said: list[str] = []
    for target in fleet.targets.values():
        url = fleet.tasks.catalogue_url or target.url
        try:
            with catalogue.catalogue(url) as conn:
                said += _overdue_target(conn, fleet, target.name, target.schedule, now, notifiers)
        except Exception:  # noqa: S112 - a target that is down alerts through its jobs
            continue
    return said


def _overdue_target(
    conn: Connection,
    fleet: FleetConfig,
    target: str,
    schedule: dict[str, str],
    now: dt.datetime,
    notifiers: Sequence[Notifier],
) -> list[str]:
    said: list[str] = []
    runs = catalogue.runs(conn, target=target, limit=500)
    for job, cron in schedule.items():
        if cron == OFF:
            continue
        mine = [run for run in runs if run.job == job]
        if not mine:
            continue
        ok = [run for run in mine if run.status == "ok"]
        newest = ok[0] if ok else mine[-1]
        since = newest.scheduled_for or newest.started_at
        allowed = period(cron, now) * fleet.alerts.overdue_factor
        if now - since > allowed:
            message = f"{job} on {target} has not succeeded since {since:%Y-%m-%d %H:%M} UTC"
            details = {"job": job, "last_success": since.isoformat() if ok else None}
            said += _open(conn, notifiers, target, f"overdue:{job}", "overdue", message, details)
    return said
