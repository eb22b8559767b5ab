"""Let one backup or expire run at a time per database and storage: a lock object.

The lock is a small JSON object, ``locks/<name>.json``, in the backup storage itself, so
it binds every host that writes there. It records who holds it (host, pid, the
process's start time, a random token) and a heartbeat: the holder rewrites it every
``ttl / 3``, and ``expires_at`` is the last heartbeat plus ``ttl``.

- Taking it is an atomic create-if-absent: ``link(2)`` of a complete file (local), a
  PUT with ``If-None-Match: *`` (S3).
- A lock is **stale** when its holder is on this host and its process is gone (psutil:
  no such pid, a zombie, or a pid reused by a process that started at another time),
  or when it is on another host and its heartbeat expired. A live holder on this host
  is never stale, however old its heartbeat.
- A stale lock is taken over by a compare-and-swap against the version that was judged
  stale (a guarded replace locally, ``If-Match: <etag>`` on S3), so of two takers only
  one wins; the winner then reads the lock back and checks its token, which also
  catches a server that ignores conditional headers unless the two writes interleave
  exactly.
- Releasing deletes the lock only if it still holds the holder's token.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType

import psutil

from pgwarden.backup import _schema
from pgwarden.backup.errors import LockHeld, LockLost, ObjectChanged, ObjectExists, ObjectNotFound
from pgwarden.backup.storage import Storage
from pgwarden.errors import PgwardenError, UserError

__all__ = ["DEFAULT_TTL", "Lock", "LockRecord", "break_lock", "read_lock", "stale_reason"]

log = logging.getLogger("pgwarden.backup.lock")
DEFAULT_TTL = timedelta(minutes=5)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_ATTEMPTS = 5


def _now() -> datetime:
    return datetime.now(UTC)


def _lock_key(name: str) -> str:
    if not _NAME.match(name) or name.startswith("."):
        raise UserError(
            f"lock name {name!r} must be 1-100 letters, digits, '_', '.' or '-'.",
            hint="Name the lock for the database it guards, such as 'main' or 'app-prod'.",
        )
    return f"locks/{name}.json"


@dataclass(frozen=True, slots=True)
class LockRecord:
    """Say who holds a lock, since when, and until when it counts as alive."""

    name: str
    purpose: str
    host: str
    pid: int
    process_started: float
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    token: str

    def to_json(self) -> bytes:
        """Return the record as the JSON the lock object holds."""
        data = asdict(self)
        for field in ("started_at", "heartbeat_at", "expires_at"):
            data[field] = data[field].isoformat()
        return json.dumps({"format": 1, **data}, indent=2).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> LockRecord:
        """Parse and validate a lock object; raise ``ValueError`` if it is not one."""
        try:
            raw = _schema.parse(_schema.LockSchema, data, max_bytes=64 * 1024)
        except ValueError as exc:
            raise ValueError(f"not a lock record: {exc}") from None
        return cls(**raw.model_dump(exclude={"format"}))

    def describe(self) -> str:
        """Return who holds the lock, in words: ``backup by pid 42 on db1 since ...``."""
        since = self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        beat = self.heartbeat_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"{self.purpose} by pid {self.pid} on {self.host} since {since} (last heartbeat {beat})"
        )


def stale_reason(record: LockRecord, *, now: datetime | None = None) -> str | None:
    """Return why the holder of ``record`` is gone, or None if it may still be running."""
    now = now or _now()
    if record.host == socket.gethostname():
        try:
            process = psutil.Process(record.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return f"process {record.pid} on {record.host} has exited"
            started = process.create_time()
        except psutil.NoSuchProcess:
            return f"process {record.pid} on {record.host} has exited"
        except psutil.AccessDenied:
            return None  # cannot look: assume it lives
        if abs(started - record.process_started) > 1.0:
            return f"process {record.pid} on {record.host} has exited (its pid was reused)"
        return None
    if now > record.expires_at:
        expired = record.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"its heartbeat from {record.host} expired at {expired}"
    return None


def read_lock(storage: Storage, name: str) -> LockRecord | None:
    """Return the record of the lock ``name`` in ``storage``, or None if it is free."""
    try:
        data, _ = storage.read_versioned(_lock_key(name))
    except ObjectNotFound:
        return None
    try:
        return LockRecord.from_json(data)
    except ValueError:
        raise _unreadable(storage, name) from None


def break_lock(storage: Storage, name: str) -> LockRecord | None:
    """Remove the lock ``name`` whoever holds it; return what it said, if readable.

    For an operator who knows the holder is gone: a live holder loses its lock and
    finds out at its next heartbeat.
    """
    key = _lock_key(name)
    try:
        data, _ = storage.read_versioned(key)
    except ObjectNotFound:
        return None
    storage.delete(key)
    try:
        return LockRecord.from_json(data)
    except ValueError:
        return None


def _unreadable(storage: Storage, name: str) -> LockHeld:
    return LockHeld(
        f"the lock {name!r} in {storage.url} is not a pgwarden lock record.",
        hint=f"If no backup or expire is running, remove {storage.url}{_lock_key(name)}.",
    )


class Lock:
    """Hold the lock ``name`` in ``storage`` for one backup or expire.

    Use it as a context manager: it acquires, heartbeats from a background thread
    every ``ttl / 3``, and releases. Call :meth:`check` at safe points of long work
    to stop if the lock was lost.
    """

    def __init__(
        self,
        storage: Storage,
        name: str,
        *,
        purpose: str = "backup",
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if ttl <= timedelta(0):
            raise UserError("a lock's ttl must be positive.")
        self.storage = storage
        self.name = name
        self.key = _lock_key(name)
        self.purpose = purpose
        self.ttl = ttl
        self._clock = clock
        self._record: LockRecord | None = None
        self._version: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: LockLost | None = None

    @property
    def held(self) -> bool:
        """Return whether this object holds the lock (as far as it knows)."""
        return self._record is not None and self._lost is None

    @property
    def record(self) -> LockRecord | None:
        """Return the record this object wrote, while it holds the lock."""
        return self._record

    def _new_record(self) -> LockRecord:
        now = self._clock()
        return LockRecord(
            name=self.name,
            purpose=self.purpose,
            host=socket.gethostname(),
            pid=os.getpid(),
            process_started=psutil.Process().create_time(),
            started_at=now,
            heartbeat_at=now,
            expires_at=now + self.ttl,
            token=secrets.token_hex(16),
        )

    def acquire(self) -> LockRecord:
        """Take the lock, taking over a stale one; raise :class:`LockHeld` if it is held."""
        if self.held:
            raise UserError(f"the lock {self.name!r} is already held by this object.")
        # Every record this call writes: a conditional write whose answer was lost and
        # that botocore retried reports a conflict with itself.
        written: dict[str, LockRecord] = {}
        for _ in range(_ATTEMPTS):
            record = self._new_record()
            written[record.token] = record
            try:
                version = self.storage.create(self.key, record.to_json())
            except ObjectExists:
                pass
            else:
                if self._confirm(record, version):
                    return record
                continue
            try:
                data, version = self.storage.read_versioned(self.key)
            except ObjectNotFound:
                continue  # released meanwhile: try to create it again
            try:
                current = LockRecord.from_json(data)
            except ValueError:
                raise _unreadable(self.storage, self.name) from None
            mine = written.get(current.token)
            if mine is not None and self._confirm(mine, version):
                return mine  # our write succeeded, though its answer was lost
            reason = stale_reason(current, now=self._clock())
            if reason is None:
                raise LockHeld(
                    f"cannot start the {self.purpose}: the lock {self.name!r} in "
                    f"{self.storage.url} is held, {current.describe()}.",
                    hint="Wait for it to finish. If that process is gone for good, remove "
                    f"the lock with `pgwarden backup unlock {self.name}`.",
                )
            try:
                version = self.storage.replace(self.key, record.to_json(), version=version)
            except ObjectChanged:
                continue  # another taker, or the holder's heartbeat, got there first
            if self._confirm(record, version):
                log.warning(
                    "took over the stale lock %r (%s): %s", self.name, current.describe(), reason
                )
                return record
        raise LockHeld(
            f"cannot take the lock {self.name!r} in {self.storage.url}: it changed under "
            f"each of {_ATTEMPTS} attempts.",
            hint="Another process is taking it at the same time; try again.",
        )

    def _confirm(self, record: LockRecord, version: str) -> bool:
        """Read the lock back; keep it as ours if it holds our token."""
        try:
            data, current_version = self.storage.read_versioned(self.key)
            current = LockRecord.from_json(data)
        except (ObjectNotFound, ValueError):
            return False
        if current.token != record.token:
            return False
        self._record, self._version, self._lost = record, current_version, None
        return True

    def refresh(self) -> None:
        """Write a new heartbeat; raise :class:`LockLost` if the lock is no longer ours."""
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            record, version = self._record, self._version
            if record is None or version is None:
                raise UserError(f"the lock {self.name!r} is not held by this object.")
            now = self._clock()
            beat = replace(record, heartbeat_at=now, expires_at=now + self.ttl)
            try:
                self._version = self.storage.replace(self.key, beat.to_json(), version=version)
            except ObjectChanged:
                if self._wrote(beat):
                    return
                self._lost = LockLost(
                    f"the lock {self.name!r} in {self.storage.url} was taken over or removed "
                    f"while this {self.purpose} held it.",
                    hint="Another process may have run at the same time: check both results.",
                )
                raise self._lost from None
            self._record = beat

    def _wrote(self, beat: LockRecord) -> bool:
        """Return whether the lock holds ``beat`` after all (a retried write's conflict)."""
        try:
            data, version = self.storage.read_versioned(self.key)
            current = LockRecord.from_json(data)
        except (ObjectNotFound, ValueError):
            return False
        if current != beat:
            return False
        self._record, self._version = beat, version
        return True

    def check(self) -> None:
        """Raise :class:`LockLost` if the heartbeat found the lock taken away."""
        if self._lost is not None:
            raise self._lost

    def release(self) -> bool:
        """Remove the lock if this object holds it; return whether it did.

        Releasing twice, or a lock that was taken over, removes nothing.
        """
        self._stop_heartbeat()
        with self._mutex:
            record, version = self._record, self._version
            self._record = self._version = None
            if record is None or version is None or self._lost is not None:
                return False
            try:
                self.storage.delete_version(self.key, version=version)
            except ObjectChanged:
                log.warning("the lock %r was taken over; leaving it to its holder", self.name)
                return False
            return True

    def _heartbeat(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except LockLost:
                return
            except PgwardenError as exc:  # a storage hiccup: try again next beat
                log.warning("heartbeat of lock %r failed: %s", self.name, exc)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def __enter__(self) -> Lock:
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"pgwarden-lock-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lost = self._lost
        self.release()
        if lost is not None and exc is None:
            raise lost
