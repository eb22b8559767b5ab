"""Restore a cluster to a moment: a base backup, then archived WAL replayed to a target.

:func:`restore_pitr` plans the restore (:mod:`pgwarden.backup.pitr_plan`: a gap refuses it
before anything is written, naming the missing segment), lays the backup out in a new
data directory, checks it with pg_verifybackup (after pg_combinebackup for an incremental
one), writes the recovery settings, starts the server with the spool's restore script
while WAL is fetched in parallel, and waits until the target is reached.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgwarden.backup._postmaster import alive, own, server_bin_dir, start_server, stop_server
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import (
    IntegrityFailed,
    RecoveryFailed,
    TargetNotEmpty,
)
from pgwarden.backup.physical import (
    BaseBackup,
    base_backup_chunks,
    read_base_backup,
)
from pgwarden.backup.pitr_plan import RecoveryTarget, plan_restore
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER
from pgwarden.backup.wal.spool import WalPrefetch
from pgwarden.db.binaries import find_binary

__all__ = ["RestoredCluster", "restore_pitr", "stop_restored"]

log = logging.getLogger("pgwarden.backup")

_STOPPED = re.compile(r"recovery stopping (?:before|after) .*")
_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")
_LAST_TX = re.compile(r"last completed transaction was at log time (.+)")
_FATAL = re.compile(r"(?:FATAL|PANIC):\s+(.*)")


@dataclass(frozen=True, slots=True)
class RestoredCluster:
    """A restored data directory, its server, and where recovery stopped."""

    data_dir: Path
    port: int
    backup_id: str
    target: RecoveryTarget
    reached: str  # PostgreSQL's own words: "recovery stopping before commit of ..."
    reached_lsn: str | None
    last_transaction_at: str | None
    seconds: float
    wal_files: int
    running: bool
    bin_dir: Path = field(repr=False, default=Path())


class _ChunkReader:
    """A file-like view of an iterator of bytes, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()  # deleting from its front is cheap in CPython

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def _check_target_dir(data_dir: Path, *, overwrite: bool) -> None:
    if alive(data_dir) is not None:
        raise TargetNotEmpty(
            f"a server is running on {data_dir}; pgwarden never restores over a running server.",
            hint="Restore into a new directory, or stop that server first.",
        )
    if data_dir.exists() and not data_dir.is_dir():
        raise TargetNotEmpty(f"{data_dir} exists and is not a directory.")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        if not overwrite:
            raise TargetNotEmpty(
                f"{data_dir} is not empty.",
                hint="Restore into a new or empty directory, or pass --overwrite to empty it.",
            )
        shutil.rmtree(data_dir)


def _extract(
    storage: Storage, backup: BaseBackup, directory: Path, keyring: BackupKeyring | None
) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    reader = _ChunkReader(base_backup_chunks(storage, backup, keyring=keyring))
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        archive.extractall(directory, filter="data")
    reader.read()  # the end: the stored tar's SHA-256 is checked here


def _run_tool(name: str, major: int, args: list[str], backup: BaseBackup) -> None:
    tool = find_binary(name, min_major=major)
    result = subprocess.run(
        [str(tool.path), *args], capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise IntegrityFailed(
            f"{name} refuses base backup {backup.id}: {result.stderr.strip()[-500:]}",
            hint="Restore from another base backup.",
        )


def _chain(storage: Storage, backup: BaseBackup) -> list[BaseBackup]:
    """Return the full backup an incremental one builds on, then each increment, in order."""
    chain = [backup]
    while chain[0].incremental_from is not None:
        if len(chain) > 1000:
            raise IntegrityFailed(f"base backup {backup.id} has a chain of increments that loops.")
        chain.insert(
            0, read_base_backup(storage, chain[0].incremental_from, cluster=backup.cluster)
        )
    return chain


def _lay_out(
    storage: Storage, backup: BaseBackup, data_dir: Path, keyring: BackupKeyring | None
) -> None:
    """Extract the base backup (combining an incremental one with its chain) and verify it."""
    if backup.incremental_from is None:
        _extract(storage, backup, data_dir, keyring)
    else:
        parts = []
        try:
            for index, link in enumerate(_chain(storage, backup)):
                part = data_dir.with_name(f"{data_dir.name}.part{index}")
                shutil.rmtree(part, ignore_errors=True)
                _extract(storage, link, part, keyring)
                parts.append(part)
            _run_tool(
                "pg_combinebackup",
                backup.major,
                ["--output", str(data_dir), *(str(part) for part in parts)],
                backup,
            )
        finally:
            for part in parts:
                shutil.rmtree(part, ignore_errors=True)
    (data_dir / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    _run_tool("pg_verifybackup", backup.major, ["--no-parse-wal", "--quiet", str(data_dir)], backup)


def _write_recovery(data_dir: Path, script: Path, target: RecoveryTarget, port: int) -> None:
    settings = {
        "restore_command": f'"{script}" %f %p',
        "recovery_target_timeline": "latest",
        "archive_mode": "off",
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "lc_messages": "C",
        "logging_collector": "off",
        **target.settings(),
    }
    lines = ["", "# Added by pgwarden for a point-in-time restore"]
    for key, value in settings.items():
        quoted = value if key == "port" or key == "logging_collector" else _quote(value)
        lines.append(f"{key} = {quoted}")
    with (data_dir / "postgresql.auto.conf").open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    (data_dir / "recovery.signal").touch()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _wait(
    data_dir: Path, log_file: Path, target: RecoveryTarget, prefetch: WalPrefetch, timeout: float
) -> tuple[str, str | None, str | None]:
    deadline = time.monotonic() + timeout
    want = (
        "recovery has paused"
        if target.action == "pause" and not target.latest
        else ("database system is ready to accept connections")
    )
    started = False
    while time.monotonic() < deadline:
        if prefetch.error is not None:  # before PostgreSQL takes the gap for the end
            raise prefetch.error
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        started = started or alive(data_dir) is not None
        if want in text and ("redo" in text or "recovery stopping" in text or "paused" in text):
            stopped = _STOPPED.search(text)
            done = _REDO_DONE.search(text)
            last = _LAST_TX.search(text)
            reached = stopped[0] if stopped else "the end of the archived WAL"
            return reached, done[1] if done else None, last[1].strip() if last else None
        fatal = _FATAL.search(text)
        if fatal or (started and alive(data_dir) is None):
            detail = (
                prefetch.error.message
                if prefetch.error
                else (fatal[1] if fatal else "the server stopped")
            )
            raise RecoveryFailed(
                f"recovery of {data_dir} failed: {detail}",
                hint=f"Read the server log at {log_file}.",
            )
        time.sleep(0.1)
    raise RecoveryFailed(
        f"recovery of {data_dir} did not reach its target within {timeout:.0f} s.",
        hint=f"Read the server log at {log_file}; pass a longer --timeout for a large restore.",
    )


def restore_pitr(
    storage: Storage,
    data_dir: Path,
    target: RecoveryTarget,
    *,
    port: int,
    cluster: str = DEFAULT_CLUSTER,
    backup_id: str | None = None,
    keyring: BackupKeyring | None = None,
    overwrite: bool = False,
    workers: int = 4,
    ahead: int = 16,
    use_partial: bool = False,
    timeout: float = 3600,
) -> RestoredCluster:
    """Restore ``cluster`` into the new data directory ``data_dir``, to ``target``.

    The server is left running on ``port`` (127.0.0.1), promoted or paused as
    ``target.action`` says; :func:`stop_restored` stops it. At most ``ahead`` WAL
    segments are fetched ahead of recovery; ``use_partial`` replays the partial segment
    `pgwarden wal stream` archived, at the end of the newest timeline.
    """
    begun = time.monotonic()
    data_dir = data_dir.absolute()
    _check_target_dir(data_dir, overwrite=overwrite)
    plan = plan_restore(
        storage,
        target,
        cluster=cluster,
        backup_id=backup_id,
        keyring=keyring,
        use_partial=use_partial,
    )
    bin_dir = server_bin_dir(plan.backup.major)
    spool = data_dir.with_name(data_dir.name + ".wal-spool")
    log_file = data_dir.with_name(data_dir.name + ".log")
    shutil.rmtree(spool, ignore_errors=True)
    log_file.unlink(missing_ok=True)
    prefetch = WalPrefetch(storage, plan.wal, spool, keyring=keyring, workers=workers, ahead=ahead)
    try:
        prefetch.start()
        _lay_out(storage, plan.backup, data_dir, keyring)
        log.info("base backup %s laid out in %.1f s", plan.backup.id, time.monotonic() - begun)
        _write_recovery(data_dir, prefetch.script, target, port)
        own(data_dir)
        start_server(bin_dir, data_dir, log_file)
        log.info("server started at %.1f s", time.monotonic() - begun)
        reached, lsn, last = _wait(data_dir, log_file, target, prefetch, timeout)
        log.info("recovery done at %.1f s", time.monotonic() - begun)
    except BaseException:
        stop_server(bin_dir, data_dir)
        raise
    finally:
        prefetch.close()
    return RestoredCluster(
        data_dir=data_dir,
        port=port,
        backup_id=plan.backup.id,
        target=target,
        reached=reached,
        reached_lsn=lsn,
        last_transaction_at=last,
        seconds=time.monotonic() - begun,
        wal_files=len(plan.wal),
        running=True,
        bin_dir=bin_dir,
    )


def stop_restored(restored: RestoredCluster, *, remove: bool = False) -> None:
    """Stop a restored server; with ``remove``, delete its data directory, spool and log."""
    stop_server(restored.bin_dir, restored.data_dir)
    shutil.rmtree(
        restored.data_dir.with_name(restored.data_dir.name + ".wal-spool"), ignore_errors=True
    )
    if remove:
        shutil.rmtree(restored.data_dir, ignore_errors=True)
        restored.data_dir.with_name(restored.data_dir.name + ".log").unlink(missing_ok=True)
