"""Make logical backups with pg_dump, with row counts taken in the dump's own snapshot.

:func:`create_backup` opens a ``REPEATABLE READ`` transaction, exports its snapshot
(``pg_export_snapshot()``) and runs ``pg_dump --snapshot`` while that transaction stays
open, counting each table's rows in the same snapshot meanwhile: the counts in the
manifest are those of the very data dumped. Then:

- **custom format** (tables under ``parallel_min_size``, 1 GiB, or one table holding
  most of the data): one archive streamed from pg_dump's stdout through compression
  and encryption into the storage, never staged on disk.
- **directory format** (larger tables spread over several, or ``jobs`` > 1): pg_dump's
  workers, one per CPU, each write their own files into a local staging directory; each file is
  compressed, encrypted and stored as soon as its worker has closed it, while the dump
  goes on, and removed from the staging directory.

By default pg_dump writes its output uncompressed and pgwarden compresses it with zstd
on several threads, hashing (plaintext and stored bytes) and encrypting in the same
pass; ``compression="gzip"`` leaves it to pg_dump inside the archive, as backups made
before pgwarden compressed by itself were.

The manifest is written last, so a backup that failed or was killed has none and is
listed as incomplete. The storage lock named for the database is held throughout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from pgwarden import __version__
from pgwarden.backup import _dump, _pgtools, _tables
from pgwarden.backup._dump import COMPRESSIONS, PARALLEL_MIN_SIZE, resolve_compression
from pgwarden.backup._streams import Digest, compress_stream
from pgwarden.backup.crypto import BackupKeyring, encrypt_stream
from pgwarden.backup.errors import StorageError
from pgwarden.backup.lock import Lock
from pgwarden.backup.manifest import (
    MANIFEST,
    STARTED,
    Compression,
    Manifest,
    StoredFile,
    backup_prefix,
    new_backup_id,
    started_record,
    storage_name,
)
from pgwarden.backup.progress import BackupProgress, ProgressCallback, counted, no_progress
from pgwarden.backup.storage import Storage
from pgwarden.db import clients
from pgwarden.db.binaries import Binary
from pgwarden.errors import UserError
from pgwarden.urls import parse_database_url, redact_url

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "PARALLEL_MIN_SIZE",
    "ROW_COUNTS",
    "SECTIONS",
    "BackupResult",
    "create_backup",
    "resolve_compression",
]

FORMATS = ("auto", "custom", "directory")
SECTIONS = ("all", "schema", "data")
ROW_COUNTS = ("exact", "estimate", "none")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup: its manifest, where it is, and where it was copied."""

    manifest: Manifest
    storage: str
    prefix: str
    copied_to: str | None = None


def _check_options(dump_format: str, jobs: int | None, section: str, row_counts: str) -> None:
    if dump_format not in FORMATS:
        raise UserError(
            f"unknown dump format {dump_format!r}.", hint="Use auto, custom or directory."
        )
    if section not in SECTIONS:
        raise UserError(f"unknown section {section!r}.", hint="Use all, schema or data.")
    if row_counts not in ROW_COUNTS:
        raise UserError(
            f"unknown row count method {row_counts!r}.", hint="Use exact, estimate or none."
        )
    if jobs is None:
        return
    if jobs < 1:
        raise UserError(f"--jobs must be 1 or more, not {jobs}.")
    if jobs > 1 and dump_format == "custom":
        raise UserError(
            "parallel dumps (--jobs above 1) need the directory format.",
            hint="Add --format directory: pg_dump's parallel workers each write files of "
            "their own, which a single custom-format stream cannot hold.",
        )


def create_backup(
    url: str | URL,
    storage: Storage,
    *,
    schemas: Sequence[str] = (),
    exclude_schemas: Sequence[str] = (),
    tables: Sequence[str] = (),
    exclude_tables: Sequence[str] = (),
    section: str = "all",
    dump_format: str = "auto",
    jobs: int | None = None,
    parallel_min_size: int = PARALLEL_MIN_SIZE,
    compression: str = "auto",
    compression_level: int | None = None,
    keyring: BackupKeyring | None = None,
    row_counts: str = "exact",
    copy_to: Storage | None = None,
    staging_dir: Path | None = None,
    on_progress: ProgressCallback = no_progress,
) -> BackupResult:
    """Back up the database at ``url`` into ``storage`` with pg_dump; return its manifest.

    Tables are chosen with ``schemas``/``tables`` (include) and ``exclude_*`` (names,
    ``schema.name``, ``*`` and ``?``); ``section`` is ``all``, ``schema`` or ``data``.
    ``keyring`` encrypts (its primary key; the manifest records the key id).
    ``row_counts`` is ``exact`` (``count(*)`` per table: a full scan of each, in the
    dump's snapshot), ``estimate`` (the planner's ``reltuples``: free, not checked on
    restore) or ``none``. ``copy_to`` receives a copy once the backup is complete.
    ``dump_format`` ``auto`` with ``jobs`` None dumps tables of at least
    ``parallel_min_size`` bytes, none holding more than half of them, in the directory
    format with one job per CPU, others in the custom format; ``compression`` ``auto``
    is pgwarden's zstd.
    Raise :class:`LockHeld` if a backup or expire of this database is running.
    """
    _check_options(dump_format, jobs, section, row_counts)
    if section == "schema":
        row_counts = "none"
    engine = _pgtools.engine_for(url, application_name="pgwarden-backup")
    try:
        with _pgtools.connect(engine) as conn:
            major, version = _pgtools.server_version(conn)
            database = str(conn.execute(sa.text("SELECT current_database()")).scalar_one())
            sizes = (0, 0)
            if dump_format == "auto" and jobs is None:
                total, largest = conn.execute(sa.text(_TABLE_SIZES)).one()
                sizes = (int(total), int(largest))
            dump_format, jobs = _dump.choose_layout(
                dump_format, jobs, sizes, parallel_min_size=parallel_min_size
            )
            conn.rollback()  # the snapshot's transaction begins afresh below
            binary = _pgtools.client_binary("pg_dump", min_major=major)
            compress = _dump.resolve_compression(binary, compression, compression_level)
            storage.check()
            with Lock(storage, storage_name(database), purpose="backup") as lock:
                job = _Job(url, storage, conn, binary, database, on_progress)
                manifest = job.run(
                    version=version,
                    compression=compress,
                    keyring=keyring,
                    row_counts=row_counts,
                    selection_options={
                        "schemas": list(schemas),
                        "exclude_schemas": list(exclude_schemas),
                        "tables": list(tables),
                        "exclude_tables": list(exclude_tables),
                    },
                    section=section,
                    dump_format=dump_format,
                    jobs=jobs,
                    staging_dir=staging_dir,
                    lock=lock,
                )
                copied = _copy(storage, copy_to, job.prefix, manifest) if copy_to else None
    finally:
        engine.dispose()
    return BackupResult(manifest, storage.url, job.prefix, copied)


# The bytes of all the tables and of the largest, as the statistics say: reading the
# catalogue alone, it waits for no lock (a table's own size would, on a locked table).
_TABLE_SIZES = """
SELECT coalesce(sum(pages), 0) * current_setting('block_size')::bigint,
       coalesce(max(pages), 0) * current_setting('block_size')::bigint
FROM (
    SELECT c.relpages::bigint + coalesce(t.relpages, 0) AS pages
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    LEFT JOIN pg_class AS t ON t.oid = c.reltoastrelid
    WHERE c.relkind IN ('r', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
) AS tables
"""


def _copy(storage: Storage, target: Storage, prefix: str, manifest: Manifest) -> str:
    """Copy a complete backup: started marker and files first, the manifest last."""
    keys = [prefix + STARTED, *(prefix + f.name for f in manifest.files), prefix + MANIFEST]
    try:
        for key in keys:
            storage.copy_to(key, target)
    except StorageError as exc:
        raise StorageError(
            f"backup {manifest.id} is complete in {storage.url}, but copying it to "
            f"{target.url} failed: {exc.message}",
            hint=(exc.hint or "") + " The copy there has no manifest, so it counts as "
            "incomplete; expire removes it.",
        ) from None
    return target.url


def _staging(parent: Path | None) -> Path:
    """Create the local directory a directory-format dump is written to before upload."""
    try:
        return Path(tempfile.mkdtemp(prefix="pgwarden-dump-", dir=parent))
    except OSError as exc:
        raise UserError(
            f"cannot create a staging directory in {parent or tempfile.gettempdir()}: "
            f"{exc.strerror or exc}.",
            hint="Give --staging-dir a writable directory with room for the dump.",
        ) from None


class _Job:
    """One backup run: the snapshot transaction, the dump, the counts, the manifest."""

    def __init__(
        self,
        url: str | URL,
        storage: Storage,
        conn: Connection,
        binary: Binary,
        database: str,
        on_progress: ProgressCallback,
    ) -> None:
        self.url = url
        self.storage = storage
        self.conn = conn
        self.binary = binary
        self.database = database
        self.on_progress = on_progress
        self.started_at = datetime.now(UTC)
        self.id = new_backup_id(self.started_at)
        self.prefix = backup_prefix(database, self.id)

    def run(
        self,
        *,
        version: str,
        compression: Compression,
        keyring: BackupKeyring | None,
        row_counts: str,
        selection_options: dict[str, list[str]],
        section: str,
        dump_format: str,
        jobs: int,
        staging_dir: Path | None,
        lock: Lock,
    ) -> Manifest:
        marker = started_record(
            self.id, self.database, self.started_at, host=socket.gethostname(), pid=os.getpid()
        )
        self.storage.write_bytes(self.prefix + STARTED, marker)
        conn = self.conn.execution_options(isolation_level="REPEATABLE READ")
        staging = _staging(staging_dir) if dump_format == "directory" else None
        try:
            with conn.begin():
                # As pg_dump does: fail rather than count rows that a policy hides.
                conn.execute(sa.text("SET LOCAL row_security = off"))
                snapshot = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
                selection = _tables.select_tables(
                    _tables.read_tables(conn),
                    schemas=selection_options["schemas"],
                    exclude_schemas=selection_options["exclude_schemas"],
                    include=selection_options["tables"],
                    exclude=selection_options["exclude_tables"],
                )
                with_blobs = selection.whole_database and section != "schema"
                blobs = _tables.large_object_count(conn) if with_blobs else None
                args = [
                    str(self.binary.path),
                    f"--format={dump_format}",
                    _dump.compress_arg(self.binary, compression),
                    f"--snapshot={snapshot}",
                    "--no-password",
                    *selection.dump_args,
                    *(["--schema-only"] if section == "schema" else []),
                    *(["--data-only"] if section == "data" else []),
                ]
                client = clients.client_args(self.url, application_name="pgwarden-pg_dump")
                counter = _dump.RowCounter(conn, selection.tables, row_counts)
                counter.start()
                try:
                    if dump_format == "custom":
                        files = [self._dump_custom(args, client, keyring, compression)]
                    else:
                        assert staging is not None
                        files = self._dump_directory(
                            args, client, jobs, staging / "dump", keyring, compression, lock
                        )
                except BaseException:
                    counter.cancel()
                    raise
                entries = counter.result()
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        lock.check()
        manifest = Manifest(
            id=self.id,
            database=self.database,
            database_url=redact_url(parse_database_url(self.url).set(drivername="postgresql")),
            server_version=version,
            client_version=self.binary.version,
            started_at=self.started_at,
            ended_at=datetime.now(UTC),
            dump_format=dump_format,
            compression=compression,
            key_id=keyring.primary if keyring else None,
            files=tuple(files),
            tables=tuple(entries),
            row_counts=row_counts,
            large_objects=blobs,
            snapshot=snapshot,
            options={**selection_options, "section": section, "jobs": jobs},
            pgwarden_version=__version__,
        )
        self.storage.write_bytes(self.prefix + MANIFEST, manifest.to_json())
        return manifest

    def _store(
        self,
        name: str,
        chunks: Iterable[bytes],
        keyring: BackupKeyring | None,
        compression: Compression,
        *,
        phase: str,
        total: int | None = None,
        start: int = 0,
        quiet: bool = False,
    ) -> StoredFile:
        """Hash, compress, encrypt, hash again and write one file of the backup.

        ``quiet`` reports no progress (the file is stored on a thread of its own).
        """
        plain, stored = Digest(), Digest()
        data: Iterable[bytes] = plain.watch(chunks)
        if compression.by_pgwarden:
            assert compression.level is not None
            data = compress_stream(data, level=compression.level, threads=_dump.threads())
        if keyring is not None:
            data = encrypt_stream(data, keyring)
            name += ".enc"
        report = no_progress if quiet else self.on_progress
        data = counted(stored.watch(data), phase, report, total=total, start=start)
        self.storage.write(self.prefix + name, data)
        return StoredFile(name, stored.size, stored.hexdigest, plain.size, plain.hexdigest)

    def _dump_custom(
        self,
        args: list[str],
        client: clients.ClientArgs,
        keyring: BackupKeyring | None,
        compression: Compression,
    ) -> StoredFile:
        proc = clients.spawn(
            [*args, f"--dbname={client.dbname}"], client.env, stdout=subprocess.PIPE
        )
        errors = clients.StderrTail(proc.stderr)
        try:
            chunks = _dump.read_dump(proc, errors)
            return self._store("data.dump", chunks, keyring, compression, phase="dump")
        finally:
            _dump.stop(proc)

    def _dump_directory(
        self,
        args: list[str],
        client: clients.ClientArgs,
        jobs: int,
        target: Path,
        keyring: BackupKeyring | None,
        compression: Compression,
        lock: Lock,
    ) -> list[StoredFile]:
        """Run pg_dump's parallel workers into ``target``; store each file as it is written.

        Each file pg_dump creates is followed by a thread of its own that compresses,
        encrypts and stores it as it grows, and finishes once no process of the dump
        holds it open; ``toc.dat``, written last, once pg_dump has exited.
        """
        proc = clients.spawn(
            [*args, f"--jobs={jobs}", f"--file={target}", f"--dbname={client.dbname}"],
            client.env,
        )
        errors = clients.StderrTail(proc.stderr)
        followers: dict[str, _dump.FileFollower] = {}
        try:
            while proc.poll() is None:
                self._follow(target, followers, keyring, compression, skip="toc.dat")
                held = _dump.held_open(proc.pid)  # after the listing: see _follow
                for name, follower in followers.items():
                    if held is not None and name not in held:
                        follower.close()
                self.on_progress(self._dumped(followers))
                lock.check()
                time.sleep(0.2)
        finally:
            _dump.stop(proc)
            for follower in followers.values():
                follower.join()
        if proc.returncode != 0:
            raise _dump.dump_failed(proc.returncode, errors.text())
        self._follow(target, followers, keyring, compression)
        files = []
        for follower in followers.values():
            follower.join()
            if follower.error is not None:
                raise follower.error
            assert follower.result is not None
            files.append(follower.result)
        return sorted(files, key=lambda f: f.name)

    def _follow(
        self,
        target: Path,
        followers: dict[str, _dump.FileFollower],
        keyring: BackupKeyring | None,
        compression: Compression,
        *,
        skip: str = "",
    ) -> None:
        """Start following every file pg_dump has created in ``target`` since the last call."""
        try:
            names = sorted(p.name for p in target.iterdir())
        except OSError:
            return  # pg_dump has not made the directory yet
        for name in names:
            if name in followers or name == skip:
                continue

            def store(chunks: Iterable[bytes], name: str = name) -> StoredFile:
                return self._store(
                    f"data/{name}", chunks, keyring, compression, phase="upload", quiet=True
                )

            followers[name] = _dump.FileFollower(target / name, store)

    @staticmethod
    def _dumped(followers: dict[str, _dump.FileFollower]) -> BackupProgress:
        """Return how many bytes pg_dump has written so far."""
        done = 0
        for follower in followers.values():
            if follower.result is not None:
                done += follower.result.plain_size
            else:
                with suppress(OSError):
                    done += follower.path.stat().st_size
        return BackupProgress("dump", done)
