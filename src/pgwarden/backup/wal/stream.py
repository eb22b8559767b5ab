"""Stream WAL with ``pg_receivewal`` on a replication slot, into the archive, for a near-zero RPO.

archive_command hands over a segment only once the server has finished it; streaming
receives every record as it is written. :func:`stream_wal` supervises one
``pg_receivewal`` (its ``--synchronous`` mode, so what it received is on disk) on a
physical replication slot, so the server keeps the WAL it has not sent yet:

- each segment ``pg_receivewal`` completes goes into storage through :func:`push_wal`,
  exactly as `pgwarden wal push` archives it (compressed, checksummed, encrypted,
  idempotent: a segment archive_command archived already with the same content is
  fine, a different one is a :class:`~pgwarden.backup.errors.WalConflict`);
- the segment being received stays ``<name>.partial`` in the local directory; a copy
  goes into storage every ``partial_every`` seconds and when streaming stops (replaced,
  unlike segments, since it grows), so a restore can replay it (``--use-partial``);
- ``pg_receivewal`` that dies is started again, after 1, 2, 4 ... up to 30 seconds;
- ``stop`` (SIGTERM in `pgwarden wal stream`) ends it cleanly: ``pg_receivewal`` is
  interrupted, what it wrote is pushed, then the function returns.

The password reaches ``pg_receivewal`` through its environment (PGPASSWORD, or a
service file for an sslpassword), never its command line.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pgwarden.backup._pgtools import connect, engine_for, server_version
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import WalConflict
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import (
    DEFAULT_CLUSTER,
    _archived,
    push_partial,
    push_wal,
)
from pgwarden.backup.wal.names import parse_wal_name
from pgwarden.db.binaries import find_binary
from pgwarden.db.clients import StderrTail, client_args, first_error, spawn
from pgwarden.errors import PgwardenError, UserError

__all__ = ["DEFAULT_SLOT", "StreamStats", "ensure_slot", "stream_wal"]

log = logging.getLogger("pgwarden.backup.wal")

DEFAULT_SLOT = "pgwarden"
_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_APP = "pgwarden wal stream"


@dataclass
class StreamStats:
    """What a stream did: segments pushed or found archived, partial copies, restarts."""

    pushed: int = 0
    already: int = 0
    partials: int = 0
    restarts: int = 0
    bytes: int = 0
    last_error: str | None = None


def ensure_slot(url: str, slot: str, *, create: bool = True) -> bool:
    """Make sure the physical replication slot ``slot`` exists; return whether it was made.

    A new slot reserves WAL at once, so nothing written from now on is lost even before
    ``pg_receivewal`` first connects.
    """
    if not _SLOT.fullmatch(slot):
        raise UserError(
            f"{slot[:80]!r} is not a replication slot name.",
            hint="A slot name is 1 to 63 lower-case letters, digits and underscores.",
        )
    engine = engine_for(url, application_name=_APP)
    try:
        with connect(engine) as conn:
            kind = conn.execute(
                sa.text("SELECT slot_type FROM pg_replication_slots WHERE slot_name = :slot"),
                {"slot": slot},
            ).scalar()
            if kind is not None:
                if kind != "physical":
                    raise UserError(
                        f"the replication slot {slot!r} is a {kind} slot.",
                        hint="Name a physical slot, or a new one with --slot.",
                    )
                return False
            if not create:
                raise UserError(
                    f"there is no replication slot {slot!r} on the server.",
                    hint="Pass --create-slot, or name an existing physical slot with --slot.",
                )
            conn.execute(
                sa.text("SELECT pg_create_physical_replication_slot(:slot, true)"),
                {"slot": slot},
            )
            conn.commit()
            major, _ = server_version(conn)
    finally:
        engine.dispose()
    log.info("created the replication slot %s (PostgreSQL %d)", slot, major)
    return True


def _local(directory: Path) -> tuple[list[str], list[str]]:
    """Return the complete WAL files and the partial segments in ``directory``, in order."""
    complete, partial = [], []
    for entry in sorted(os.listdir(directory)):
        try:
            wal = parse_wal_name(entry)
        except UserError:
            continue  # pg_receivewal's temporary files, and anything else
        if wal.kind == "partial":
            partial.append(entry)
        elif wal.kind in ("segment", "history"):
            complete.append(entry)
    return complete, partial


class _Pusher:
    """Push what ``pg_receivewal`` wrote; keep the newest segment, where it resumes."""

    def __init__(
        self, storage: Storage, directory: Path, cluster: str, keyring: BackupKeyring | None
    ) -> None:
        self.storage = storage
        self.directory = directory
        self.cluster = cluster
        self.keyring = keyring
        self.stats = StreamStats()
        self._done: set[str] = set()
        self._partial_state: tuple[str, int, int] | None = None

    def sweep(self, *, partial: bool) -> None:
        complete, partials = _local(self.directory)
        for name in complete:
            if name in self._done:
                continue
            result = push_wal(
                self.storage, self.directory / name, cluster=self.cluster, keyring=self.keyring
            )
            self._done.add(name)
            self.stats.already += result.already_archived
            self.stats.pushed += not result.already_archived
            self.stats.bytes += result.size
            wal = parse_wal_name(name)
            if wal.kind == "segment":
                stale = _archived(self.storage, self.cluster, parse_wal_name(name + ".partial"))
                for item in stale:  # the segment is whole now: its partial copy is moot
                    self.storage.delete(item.key)
        segments = [n for n in complete if parse_wal_name(n).kind == "segment"]
        for name in segments[:-1]:  # pg_receivewal resumes after the newest one it finds
            (self.directory / name).unlink(missing_ok=True)
        if partial and partials:
            self._push_partial(partials[-1])

    def try_sweep(self, *, partial: bool) -> None:
        """Sweep; on storage trouble log it and leave the files for the next sweep."""
        try:
            self.sweep(partial=partial)
        except WalConflict:
            raise  # never overwritten: the stream stops with it
        except PgwardenError as exc:
            log.error("cannot push streamed WAL: %s", exc.message)
            self.stats.last_error = exc.message

    def _push_partial(self, name: str) -> None:
        path = self.directory / name
        try:
            info = path.stat()
        except FileNotFoundError:
            return  # completed meanwhile: the next sweep pushes the segment
        state = (name, info.st_size, info.st_mtime_ns)
        if state == self._partial_state:
            return
        result = push_partial(self.storage, path, cluster=self.cluster, keyring=self.keyring)
        self._partial_state = state
        self.stats.partials += not result.already_archived


def _command(url: str, directory: Path, slot: str) -> tuple[list[str], dict[str, str], int]:
    from pgwarden.backup.physical import server_facts  # it builds on the WAL archive

    facts = server_facts(url)
    major, segment_size = facts["major"], facts["segment_size"]
    binary = find_binary("pg_receivewal", min_major=major)
    args = client_args(url, application_name=_APP)
    command = [
        str(binary.path), "--dbname", args.dbname, "--directory", str(directory),
        "--slot", slot, "--synchronous", "--no-loop", "--no-password",
        "--status-interval", "1",
    ]  # fmt: skip
    return command, args.env, int(segment_size)


def _drop_torn(directory: Path, segment_size: int) -> None:
    """Remove a partial segment that pg_receivewal died while creating.

    It fills a new file with zeros to the segment's size before writing WAL into it, and
    refuses to resume from a file of any other size: one such holds no WAL yet.
    """
    for name in _local(directory)[1]:
        path = directory / name
        size = path.stat().st_size
        if size not in (0, segment_size):
            log.warning(
                "removed %s: %d bytes of zeros left by a pg_receivewal that died", name, size
            )
            path.unlink()


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """End ``pg_receivewal`` as Ctrl-C does: it flushes and closes what it received."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream_wal(
    url: str,
    storage: Storage,
    directory: Path,
    *,
    slot: str = DEFAULT_SLOT,
    create_slot: bool = True,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    stop: threading.Event | None = None,
    partial_every: float = 30.0,
    poll: float = 0.2,
    max_backoff: float = 30.0,
) -> StreamStats:
    """Stream the WAL of the server at ``url`` into ``storage`` until ``stop`` is set.

    ``directory`` is ``pg_receivewal``'s, kept between runs: it resumes where it left
    off. A :class:`WalConflict` (a different segment archived under the same name)
    stops the stream with that error: it is never overwritten.
    """
    stop = stop or threading.Event()
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_slot(url, slot, create=create_slot)
    command, env, segment_size = _command(url, directory, slot)
    pusher = _Pusher(storage, directory, cluster, keyring)
    backoff = 1.0
    while not stop.is_set():
        pusher.try_sweep(partial=False)
        _drop_torn(directory, segment_size)
        began = time.monotonic()
        process = spawn(command, env)
        stderr = StderrTail(process.stderr)
        last_partial = time.monotonic()
        try:
            while process.poll() is None and not stop.is_set():
                stop.wait(poll)
                due = partial_every > 0 and time.monotonic() - last_partial >= partial_every
                pusher.try_sweep(partial=due)
                if due:
                    last_partial = time.monotonic()
        finally:
            _interrupt(process)
        if stop.is_set():
            break
        message = first_error(stderr.text(), program="pg_receivewal")
        pusher.stats.last_error = message
        pusher.stats.restarts += 1
        if time.monotonic() - began > 60:
            backoff = 1.0
        log.warning("pg_receivewal stopped (%s); starting it again in %.0f s", message, backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, max_backoff)
    pusher.sweep(partial=True)
    return pusher.stats
