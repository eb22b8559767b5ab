"""Run one job on one target: lock, call the library, record the run, raise the alerts.

:func:`run_job` is what every Celery task calls, and what a script may call without
Celery. Each kind of job is one call of pgwarden's library (``create_backup``,
``verify_backup``, ``expire_backups``, ``insight.snapshot``, ``doctor``,
``maintain.vacuum``); around it:

- a **per-target lock**: a PostgreSQL session advisory lock on the target, one per job
  kind, so two workers never run the same job on one target at once. The server drops
  it when the connection closes, so a worker killed mid-job leaves nothing that blocks
  the next attempt. Backups and expiry hold the storage lock of ``pgwarden.backup`` too;
  a lock left by a dead process is taken over.
- the **catalogue**: a ``running`` row when the job starts, its outcome and duration
  when it ends (:mod:`pgwarden.tasks.catalogue`).
- **alerts**: on the final failure an incident opens (``unreachable`` when the target
  cannot be reached, else ``job:<kind>``), on success it closes, each with one message.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.backup import (
    BackupKeyring,
    IntegrityFailed,
    LockHeld,
    create_backup,
    expire_backups,
    list_backups,
    open_storage,
    verify_backup,
)
from pgwarden.backup.storage import Storage
from pgwarden.config import Settings
from pgwarden.db._ports import free_port
from pgwarden.db.engines import connect
from pgwarden.errors import ConnectionFailed, PgwardenError, UserError
from pgwarden.insight.doctor import doctor
from pgwarden.insight.history import snapshot
from pgwarden.maintain import vacuum
from pgwarden.tasks import catalogue, incidents
from pgwarden.tasks.alerts import Notifier
from pgwarden.tasks.config import FleetConfig, PitrSettings, Target
from pgwarden.tasks.kinds import job_kind
from pgwarden.urls import redact_text

__all__ = ["JobOutcome", "run_job", "target_storage"]

log = logging.getLogger("pgwarden.tasks")

_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext('pgwarden.tasks'), hashtext(:job))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('pgwarden.tasks'), hashtext(:job))")


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt of a job ended.

    ``status`` is ``ok``, ``failed`` or ``skipped`` (another worker holds the job's lock,
    nothing to verify, outside the maintenance windows). ``retry`` says whether trying
    again may help (a target that cannot be reached, a dump that failed), as opposed to
    a mistake in the config that only a person can fix.
    """

    target: str
    job: str
    status: str
    duration_s: float
    run_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    retry: bool = False
    alerts: tuple[str, ...] = ()


class _Skip(Exception):
    """Raised inside a job to end it as skipped, with the reason."""


def target_storage(target: Target, settings: Settings) -> Storage:
    """Open the storage of ``target``: its own, else ``<PGWARDEN_BACKUP_STORAGE>/<name>``."""
    chosen = target.storage
    if chosen is None and settings.backup_storage:
        chosen = f"{settings.backup_storage.rstrip('/')}/{target.name}"
    if chosen is None:
        raise UserError(
            f"target {target.name!r} has no backup storage.",
            hint="Give it storage = '...' in its [targets.NAME] table, or set "
            "PGWARDEN_BACKUP_STORAGE (each target then gets a folder of its own there).",
        )
    return open_storage(settings.model_copy(update={"backup_storage": chosen}))


def _keyring(settings: Settings) -> BackupKeyring | None:
    return BackupKeyring.from_settings(settings) if settings.encryption_keys else None


@contextmanager
def _target_lock(target: Target, job: str, *, pooled: bool) -> Iterator[Connection]:
    """Hold the job's advisory lock on the target; yield the connection holding it."""
    engine = catalogue.engine_for(target.url, pooled=pooled)
    with connect(engine) as conn:
        got = conn.execute(_TRY_LOCK, {"job": job}).scalar_one()
        conn.commit()
        if not got:
            raise _Skip(f"another worker is running {job} on {target.name}")
        try:
            yield conn
        finally:
            with suppress(DBAPIError):
                if conn.in_transaction():
                    conn.rollback()
                conn.execute(_UNLOCK, {"job": job})
                conn.commit()


def _backup(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    result = create_backup(target.url, target_storage(target, settings), keyring=_keyring(settings))
    manifest = result.manifest
    return {
        "backup_id": manifest.id,
        "bytes": sum(f.size for f in manifest.files),
        "tables": len(manifest.tables),
        "storage": result.storage,
    }


def _verify(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    storage = target_storage(target, settings)
    complete = [e for e in list_backups(storage, database=target.database) if e.complete]
    if not complete:
        raise _Skip(f"no complete backup of {target.name} to verify yet")
    newest = complete[0]
    record = verify_backup(
        storage,
        newest.id,
        target.url,
        scratch=target.verify_scratch,
        keyring=_keyring(settings),
    )
    return {"backup_id": newest.id, "ok": record.ok, "restore_seconds": record.restore_seconds}


def _expire(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    report = expire_backups(
        target_storage(target, settings), target.database, policy=target.retention
    )
    removed = [d.backup.id for d in report.decisions if not d.keep]
    return {"removed": removed, "kept": len(report.decisions) - len(removed)}


def _snapshot(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    with conn.begin():
        taken = snapshot(conn, keep_days=target.snapshot_keep_days)
    return {"snapshot_id": taken.id}


def _doctor(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    report = doctor(conn, thresholds=target.thresholds)
    critical = [
        {"check": f.check, "subject": f.subject, "what": f.what}
        for f in report.findings_at("critical")
    ]
    return {"counts": report.counts, "critical": critical, "failed": len(report.failed)}


def _vacuum(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    if not target.in_window(now):
        windows = ", ".join(str(w) for w in target.windows)
        raise _Skip(f"outside the maintenance windows of {target.name} ({windows})")
    report = vacuum(conn, min_dead_pct=target.vacuum_min_dead_pct, analyze=True)
    return {
        "vacuumed": [op.target.qualified for op in report.operations if op.status == "ok"],
        "failed": [op.target.qualified for op in report.failed],
    }


def _pitr_settings(target: Target) -> PitrSettings:
    if target.pitr is None:
        raise UserError(
            f"target {target.name!r} has no point-in-time recovery set up.",
            hint=f"Add a [targets.{target.name}.pitr] table to the config.",
        )
    return target.pitr


def _pitr_check(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    from pgwarden.backup.pitr_setup import check_archiving

    pitr = _pitr_settings(target)
    result = check_archiving(
        conn, target_storage(target, settings), cluster=pitr.cluster, timeout=pitr.check_timeout
    )
    return {"segment": result.segment, "seconds": result.seconds}


def _pitr_drill(
    target: Target, settings: Settings, conn: Connection, now: dt.datetime
) -> dict[str, Any]:
    from pgwarden.backup.pitr_drill import run_drill

    pitr = _pitr_settings(target)
    pitr.scratch.mkdir(parents=True, exist_ok=True)
    record = run_drill(
        target.url,
        target_storage(target, settings),
        scratch=pitr.scratch,
        port=pitr.port or free_port(),
        cluster=pitr.cluster,
        keyring=_keyring(settings),
    )
    if not record.ok:
        raise IntegrityFailed(
            f"the restore drill {record.id} of {target.name} failed: {record.detail}",
            hint="Run `pgwarden pitr status` and `pgwarden pitr drill` by hand to see why.",
        )
    return {"drill_id": record.id, "seconds": record.seconds, "backup_id": record.backup_id}


_JOBS: dict[str, Callable[[Target, Settings, Connection, dt.datetime], dict[str, Any]]] = {
    "backup": _backup,
    "verify": _verify,
    "expire": _expire,
    "snapshot": _snapshot,
    "doctor": _doctor,
    "vacuum": _vacuum,
    "pitr_check": _pitr_check,
    "pitr_drill": _pitr_drill,
}


def run_job(
    fleet: FleetConfig,
    settings: Settings,
    target_name: str,
    job: str,
    *,
    task_id: str | None = None,
    worker: str | None = None,
    attempt: int = 0,
    final: bool | Callable[[JobOutcome], bool] = True,
    scheduled_for: dt.datetime | None = None,
    notifiers: Sequence[Notifier] = (),
) -> JobOutcome:
    """Run ``job`` on the target ``target_name`` once; record it and raise its alerts.

    ``final`` says whether this attempt is the last (no retry follows), or decides it
    from the outcome: only a final failure opens an incident. ``scheduled_for`` is the
    time the schedule fired (for windows and overdue checks; now by default).
    """
    job_kind(job)
    target = fleet.target(target_name)
    now = scheduled_for or dt.datetime.now(dt.UTC)
    catalogue_url = fleet.tasks.catalogue_url or target.url
    records = _Records(catalogue_url)
    run_id = records.start(target.name, job, task_id, worker, attempt, scheduled_for)
    started = time.perf_counter()
    status, detail, error, error_type, retry = "ok", {}, None, None, False
    try:
        with (
            records.beating(run_id, fleet.tasks.heartbeat),
            _target_lock(target, job, pooled=fleet.tasks.keep_connections) as conn,
        ):
            detail = _JOBS[job](target, settings, conn, now)
    except _Skip as reason:
        status, error = "skipped", str(reason)
    except LockHeld as exc:
        # The storage lock: a backup or expire of this database runs elsewhere.
        status, error = "skipped", exc.message
    except PgwardenError as exc:
        status, error, error_type = "failed", exc.message, type(exc).__name__
        retry = not isinstance(exc, UserError) or isinstance(exc, ConnectionFailed)
    except DBAPIError as exc:
        detail_text = redact_text(str(exc.orig or exc)).strip().splitlines()
        status, error_type, retry = "failed", "DatabaseError", True
        error = f"database error: {detail_text[0] if detail_text else exc}"
    except Exception as exc:  # a job must end recorded, whatever went wrong
        status, error_type = "failed", type(exc).__name__
        if error_type == "SoftTimeLimitExceeded":  # Celery's: the job ran out of time
            error, retry = f"{job} on {target.name} ran past its time limit and was stopped", False
        else:
            log.exception("job %s on %s failed unexpectedly", job, target.name)
            error, retry = redact_text(str(exc)) or error_type, True
    outcome = JobOutcome(
        target=target.name,
        job=job,
        status=status,
        duration_s=time.perf_counter() - started,
        run_id=run_id,
        detail=detail,
        error=error,
        error_type=error_type,
        retry=retry,
    )
    records.finish(run_id, outcome)
    is_final = final(outcome) if callable(final) else final
    alerts = incidents.after_run(
        records.connection, fleet, outcome, final=is_final, notifiers=notifiers
    )
    records.close()
    if status == "failed":
        log.warning("job %s on %s failed: %s", job, target.name, error)
    return JobOutcome(**{**outcome.__dict__, "alerts": tuple(alerts)})


class _Records:
    """The catalogue connection of one run, if the catalogue can be reached."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._context: Any = None
        self.connection: Connection | None = None

    def start(
        self,
        target: str,
        job: str,
        task_id: str | None,
        worker: str | None,
        attempt: int,
        scheduled_for: dt.datetime | None,
    ) -> int | None:
        try:
            self._context = catalogue.catalogue(self.url)
            self.connection = self._context.__enter__()
            return catalogue.start_run(
                self.connection,
                target=target,
                job=job,
                task_id=task_id,
                worker=worker,
                attempt=attempt,
                scheduled_for=scheduled_for,
            )
        except (PgwardenError, DBAPIError) as exc:
            # The catalogue is the target itself and the target is down: the run is
            # logged, and the failure still alerts.
            log.warning("cannot record %s on %s in the catalogue: %s", job, target, exc)
            self.close()
            return None

    @contextmanager
    def beating(self, run_id: int | None, every: float) -> Iterator[None]:
        """Beat the run's heartbeat every ``every`` seconds on a thread, while inside."""
        if run_id is None or every <= 0:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    with connect(catalogue.engine_for(self.url)) as conn:
                        catalogue.heartbeat(conn, run_id)
                except (PgwardenError, DBAPIError) as exc:  # the next beat may get through
                    log.warning("cannot record the heartbeat of run %s: %s", run_id, exc)

        thread = threading.Thread(target=beat, name=f"pgwarden-heartbeat-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def finish(self, run_id: int | None, outcome: JobOutcome) -> None:
        if run_id is None or self.connection is None:
            return
        try:
            catalogue.finish_run(
                self.connection,
                run_id,
                status=outcome.status,
                detail=outcome.detail,
                error=outcome.error,
            )
        except DBAPIError as exc:
            log.warning("cannot record the end of run %s: %s", run_id, exc)
            self.close()

    def close(self) -> None:
        if self._context is not None:
            with suppress(Exception):
                self._context.__exit__(None, None, None)
        self._context = None
        self.connection = None
