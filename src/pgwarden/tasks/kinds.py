"""The kinds of scheduled job: what each runs, when by default, and for how long at most."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["JOBS", "JobKind", "job_kind"]


@dataclass(frozen=True)
class JobKind:
    """One kind of job run on a target: its Celery task, default schedule and time limit.

    ``default_cron`` is a cron expression, or ``None`` for a job that is off unless a
    target's config schedules it; a ``pitr`` job runs by default only on the targets with
    point-in-time recovery set up (a ``[targets.NAME.pitr]`` table). ``time_limit`` is
    the default hard limit of one run.
    """

    name: str
    task: str
    default_cron: str | None
    time_limit: timedelta
    summary: str
    pitr: bool = False


JOBS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("backup", "backup.create", "0 1 * * *", timedelta(hours=6), "a logical backup"),
        JobKind(
            "verify",
            "backup.verify",
            "0 4 * * 0",
            timedelta(hours=6),
            "restore the newest backup into a scratch database and check it",
        ),
        JobKind("expire", "backup.expire", "30 3 * * *", timedelta(minutes=30), "apply retention"),
        JobKind(
            "snapshot",
            "insight.snapshot",
            "0 * * * *",
            timedelta(minutes=5),
            "store sizes and query statistics for trends",
        ),
        JobKind(
            "doctor", "doctor.run", "*/15 * * * *", timedelta(minutes=10), "run the health checks"
        ),
        JobKind(
            "vacuum",
            "maintain.vacuum",
            None,
            timedelta(hours=4),
            "vacuum tables with many dead tuples, inside a maintenance window",
        ),
        JobKind(
            "pitr_check",
            "pitr.check",
            "20 * * * *",
            timedelta(minutes=5),
            "switch a WAL segment and wait until it is archived",
            pitr=True,
        ),
        JobKind(
            "pitr_drill",
            "pitr.drill",
            "0 5 * * 6",
            timedelta(hours=6),
            "restore to a random recent moment in a scratch directory and prove it",
            pitr=True,
        ),
    )
}


def job_kind(name: str) -> JobKind:
    """Return the job kind ``name``; a :class:`~pgwarden.errors.UserError` if unknown."""
    from pgwarden.errors import UserError

    try:
        return JOBS[name]
    except KeyError:
        raise UserError(f"unknown job {name!r}.", hint=f"Jobs: {', '.join(JOBS)}.") from None
