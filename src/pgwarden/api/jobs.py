"""Run long work (a backup, a verify, a restore, a maintenance run) as a job.

A job runs in a thread of the server process; its caller gets the job's id at once and
reads its status and progress with :meth:`Jobs.get`. Jobs live as long as the process:
a restart forgets them (the backups they made stay in storage, listed there). At most
``max_jobs`` are remembered; the oldest finished ones are forgotten first.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pgwarden.api.errors import JobNotFound
from pgwarden.errors import PgwardenError
from pgwarden.urls import redact_text

__all__ = ["Job", "JobProgress", "JobStatus", "Jobs"]

JobStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobProgress:
    """How far a job has got: ``done`` of ``total`` units (bytes, statements) of a phase."""

    phase: str
    done: int = 0
    total: int | None = None


@dataclass(frozen=True)
class Job:
    """One piece of long work and what became of it.

    ``result`` is the work's outcome as JSON-ready values once it has ``succeeded``;
    ``error`` and ``hint`` say why it ``failed``.
    """

    id: str
    kind: str
    arguments: dict[str, Any]
    status: JobStatus
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    progress: JobProgress | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    token_id: int | None = field(default=None, repr=False)


Work = Callable[[Callable[[JobProgress], None]], dict[str, Any]]


class Jobs:
    """The jobs of one server process."""

    def __init__(self, *, max_jobs: int = 200) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._max = max_jobs
        self._threads: list[threading.Thread] = []

    def start(
        self,
        kind: str,
        work: Work,
        *,
        arguments: dict[str, Any] | None = None,
        token_id: int | None = None,
        on_end: Callable[[Job], None] | None = None,
    ) -> Job:
        """Start ``work(report_progress)`` in a thread and return its job, running."""
        job = Job(
            id=f"{kind}-{secrets.token_hex(6)}",
            kind=kind,
            arguments=dict(arguments or {}),
            status="running",
            started_at=dt.datetime.now(dt.UTC),
            token_id=token_id,
        )
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(job.id, work, on_end), name=f"pgwarden-{job.id}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job

    def get(self, job_id: str) -> Job:
        """Return the job ``job_id``; raise :class:`JobNotFound` if this process has none."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(
                f"there is no job {job_id!r} in this server.",
                hint="Jobs are kept while the server runs; list them at /jobs.",
            )
        return job

    def list(self) -> list[Job]:
        """Return every remembered job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started_at, reverse=True)

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the running jobs' threads to end (for tests and shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout_s)

    def _update(self, job_id: str, **changes: Any) -> Job:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = job
            return job

    def _run(self, job_id: str, work: Work, on_end: Callable[[Job], None] | None) -> None:
        def report(progress: JobProgress) -> None:
            self._update(job_id, progress=progress)

        try:
            result = work(report)
        except PgwardenError as error:
            job = self._ended(job_id, "failed", error=error.message, hint=error.hint)
        except Exception as error:  # the job's own failure, reported in its status
            detail = redact_text(str(error)).strip().splitlines()
            job = self._ended(job_id, "failed", error=detail[0] if detail else type(error).__name__)
        else:
            job = self._ended(job_id, "succeeded", result=result)
        if on_end is not None:
            on_end(job)

    def _ended(self, job_id: str, status: JobStatus, **changes: Any) -> Job:
        return self._update(job_id, status=status, ended_at=dt.datetime.now(dt.UTC), **changes)

    def _forget_old(self) -> None:
        finished = [job for job in self._jobs.values() if job.status != "running"]
        finished.sort(key=lambda job: job.started_at)
        while len(self._jobs) > self._max and finished:
            del self._jobs[finished.pop(0).id]
