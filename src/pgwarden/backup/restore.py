"""Restore a logical backup, whole or chosen tables, proving it before touching the target.

Integrity first. Before a statement reaches the target:

1. the target is checked: a whole restore refuses a database that holds any user table
   (a restore of chosen tables, one that holds any of them) unless ``clean``;
2. every stored file is read back in full and proved: its size and SHA-256 against the
   manifest, and, when encrypted, every chunk's authentication (which also catches a
   wrong key), then the plaintext's SHA-256. A failure raises :class:`IntegrityFailed`
   (exit code 3) and the target is untouched.

Then pg_restore runs in one transaction (``--single-transaction``), fed from the storage
again (custom format; decrypting and decompressing on the way) with every check repeated
and the last piece of the archive held back until they pass, so even a file replaced
between the two reads cannot be committed. With ``jobs`` > 1 there is no single
transaction: a whole restore into tables it creates runs in three steps with the rows
of every load known, staging nothing (:mod:`~pgwarden.backup._parallel`); any other is
``pg_restore --jobs`` on the proved files staged in a local directory, as is a
directory-format backup restored in one job. ``jobs`` None is one job per CPU for a
backup of at least ``parallel_min_size`` bytes (1 GiB of archive) where no table holds
more than half of the rows, else one job; ``single_transaction`` asks for one job and
one transaction whatever the size. ``precheck=False`` skips the first read (for a
throwaway target, as verify does).

The restore's sessions build indexes with a ``maintenance_work_mem`` of at least
:data:`~pgwarden.backup._pgrestore.RESTORE_WORK_MEM` (sorts in memory rather than on
disk), set for those sessions only.

Afterwards each restored table's rows are compared with the manifest's; a difference
raises :class:`RowCountMismatch` (exit code 3). In one transaction the rows are those
the server reported loading, table by table (psql's ``COPY n``, matched to the archive's
list of contents), as in the three steps; with ``pg_restore --jobs``, or ``recount``,
or when a table's load was not seen, its rows are counted with ``count(*)`` once the
restore is committed (a scan of every table, which also sets the hint bits of every
row just loaded).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from pgwarden.backup import _archive, _dump, _pgtools, _tables, _toc
from pgwarden.backup._archive import check_files
from pgwarden.backup._dump import PARALLEL_MIN_SIZE
from pgwarden.backup._parallel import restore_backup_in_parallel
from pgwarden.backup._pgrestore import RestoreCommand, session_options
from pgwarden.backup._streams import CheckedRead, held_back
from pgwarden.backup.catalog import complete_manifest, find_backup
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import RestoreFailed, RowCountMismatch, TargetNotEmpty
from pgwarden.backup.manifest import Manifest, RowCheck, TableEntry
from pgwarden.backup.progress import ProgressCallback, counted, no_progress
from pgwarden.backup.storage import Storage
from pgwarden.db import clients
from pgwarden.errors import UserError
from pgwarden.urls import parse_database_url, redact_url

__all__ = ["RestoreResult", "backup_contents", "check_files", "restore_backup"]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A finished restore: what went where, how long it took, and the row checks."""

    backup_id: str
    target: str
    tables: tuple[str, ...]
    row_checks: tuple[RowCheck, ...]
    large_objects: tuple[int, int] | None
    seconds: float
    mode: str
    staged: bool
    prechecked: bool
    counted_on_load: bool = False

    @property
    def ok(self) -> bool:
        """Return whether every count agrees with the manifest."""
        agree = self.large_objects is None or self.large_objects[0] == self.large_objects[1]
        return agree and all(check.ok for check in self.row_checks)


def backup_contents(
    storage: Storage,
    backup_id: str,
    *,
    keyring: BackupKeyring | None = None,
    staging_dir: Path | None = None,
) -> list[str]:
    """Return the table of contents of a backup, as ``pg_restore --list`` prints it.

    Only the start of a custom-format archive is read (where its contents are listed);
    of a directory-format one, only ``toc.dat``.
    """
    entry = find_backup(storage, backup_id)
    manifest = complete_manifest(entry)
    keyring = _archive.keyring_for(manifest, keyring)
    binary = _pgtools.client_binary("pg_restore", min_major=_archive.major(manifest.client_version))
    args = [str(binary.path), "--list", f"--format={manifest.dump_format}"]
    with _archive.staging_directory(staging_dir, "pgwarden-list-") as temp:
        feed: CheckedRead | None = None
        if manifest.dump_format == "directory":
            archive = _archive.stage(
                storage, manifest, entry.prefix, keyring, Path(temp), no_progress, only="toc.dat"
            )
            args.append(str(archive))
        else:
            feed = _archive.read_file(storage, manifest, entry.prefix, manifest.files[0], keyring)
        proc = clients.spawn(args, stdin=subprocess.PIPE if feed else None, stdout=subprocess.PIPE)
        errors = clients.StderrTail(proc.stderr)
        output: list[bytes] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: output.append(stdout.read()))
        reader.start()
        try:
            if feed is not None:
                _feed_until_closed(proc, feed)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the stored file failed its checks: stop reading it
                proc.kill()
                proc.wait()
            reader.join()
    if code != 0:
        if feed is not None:
            feed.finish()  # a damaged archive is an integrity failure, not pg_restore's
        raise RestoreFailed(
            f"pg_restore --list failed: {clients.first_error(errors.text(), program='pg_restore')}"
        )
    return b"".join(output).decode("utf-8", "replace").splitlines()


def _feed_until_closed(proc: subprocess.Popen[bytes], chunks: Iterator[bytes]) -> None:
    """Feed an archive to ``pg_restore --list`` until it has read the contents and quit."""
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # it read the table of contents and stopped: all it needs
    finally:
        with suppress(BrokenPipeError):
            proc.stdin.close()


def _choose(manifest: Manifest, patterns: Sequence[str]) -> list[TableEntry]:
    """Return the manifest's tables matching ``patterns``, with the partitions of each."""
    chosen: set[str] = set()
    for given in patterns:
        found = [
            t.qualified
            for t in manifest.tables
            if fnmatchcase(t.qualified if "." in given else t.name, given)
        ]
        if not found:
            names = ", ".join(t.qualified for t in manifest.tables[:8])
            raise UserError(
                f"backup {manifest.id} holds no table matching {given!r}.",
                hint=f"Its tables include {names}; see them all with `pgwarden backup info "
                f"{manifest.id}`.",
            )
        chosen.update(found)
    grew = True
    while grew:
        grew = False
        for table in manifest.tables:
            if table.parent in chosen and table.qualified not in chosen:
                chosen.add(table.qualified)
                grew = True
    return [t for t in manifest.tables if t.qualified in chosen]


def _check_target(
    conn: sa.Connection,
    manifest: Manifest,
    chosen: list[TableEntry] | None,
    *,
    clean: bool,
    shown: str,
) -> set[str]:
    """Refuse a target that holds what the restore would write; return its tables."""
    present = set(_tables.user_tables(conn))
    section = manifest.options.get("section", "all")
    wanted = chosen if chosen is not None else list(manifest.tables)
    hint = (
        "Restore into an empty database (createdb NAME; --target-url), or add --clean to "
        "drop and recreate the backup's objects there."
    )
    if section == "data":
        if clean:
            raise UserError(
                f"backup {manifest.id} holds data only; --clean cannot drop its tables.",
                hint="Empty the tables yourself (TRUNCATE), then restore without --clean.",
            )
        full = [t.qualified for t in wanted if _tables.table_rows(conn, t)]
        if full:
            raise TargetNotEmpty(
                f"{shown} already has rows in {', '.join(full[:5])}"
                f"{' and more' if len(full) > 5 else ''}; a data-only restore adds to them.",
                hint="Empty those tables first (TRUNCATE), or restore into another database.",
            )
        return present
    if clean:
        return present
    clash = (
        sorted(present)
        if chosen is None
        else [t.qualified for t in chosen if t.qualified in present]
    )
    if clash:
        listed = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
        what = "user tables" if chosen is None else "tables of the same name"
        raise TargetNotEmpty(f"{shown} already holds {what}: {listed}.", hint=hint)
    return present


def _count_after(
    conn: sa.Connection,
    manifest: Manifest,
    restored: list[TableEntry],
    loaded: dict[str, int],
    *,
    whole: bool,
    clean: bool,
) -> tuple[tuple[RowCheck, ...], tuple[int, int] | None]:
    """Return the row checks: rows ``loaded`` where known, else counted in the target."""
    checks = tuple(
        RowCheck(
            t.qualified,
            t.rows,
            loaded[t.qualified] if t.qualified in loaded else _tables.table_rows(conn, t),
        )
        for t in restored
        if t.rows is not None and manifest.row_counts == "exact"
    )
    blobs = None
    if whole and not clean and manifest.large_objects is not None:
        blobs = (manifest.large_objects, _tables.large_object_count(conn))
    return checks, blobs


def _loaded(entries: list[str], copied: list[int] | None) -> dict[str, int]:
    """Match psql's ``COPY n`` counts to the archive's data entries, in order.

    Empty (so every table is counted instead) unless there is exactly one count per entry.
    """
    if copied is None or len(copied) != len(entries) or len(set(entries)) != len(entries):
        return {}
    return dict(zip(entries, copied, strict=True))


def restore_backup(
    storage: Storage,
    backup_id: str,
    target_url: str | URL,
    *,
    tables: Sequence[str] = (),
    clean: bool = False,
    jobs: int | None = None,
    single_transaction: bool = False,
    parallel_min_size: int = PARALLEL_MIN_SIZE,
    keyring: BackupKeyring | None = None,
    precheck: bool = True,
    recount: bool = False,
    owners: bool = True,
    privileges: bool = True,
    staging_dir: Path | None = None,
    on_progress: ProgressCallback = no_progress,
) -> RestoreResult:
    """Restore backup ``backup_id`` into the database at ``target_url``; check its rows.

    ``tables`` (names, ``schema.name``, ``*`` and ``?``) restores only those, with their
    indexes, constraints, triggers, policies and owned sequences; the types, functions
    and schemas they use must exist in the target. ``clean`` drops the backup's objects
    in the target first. ``owners``/``privileges`` False restore without ``ALTER
    OWNER``/``GRANT`` (into a server that lacks the roles). ``recount`` counts every
    restored table's rows with ``count(*)`` rather than take them from the load.
    ``jobs`` None is one job per CPU for a backup of at least ``parallel_min_size``
    bytes with no table holding more than half of its rows, else one;
    ``single_transaction`` restores in one job and one transaction.
    Raise :class:`TargetNotEmpty`, :class:`IntegrityFailed` (the target untouched), or
    :class:`RowCountMismatch` after the restore.
    """
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be 1 or more, not {jobs}.")
    if single_transaction and jobs is not None and jobs > 1:
        raise UserError(
            f"a restore in one transaction runs one job, not {jobs}.",
            hint="Drop --jobs, or drop --single-transaction to restore in parallel.",
        )
    entry = find_backup(storage, backup_id)
    manifest = complete_manifest(entry)
    if jobs is None:
        # As for a dump: parallel where the data spreads over tables (one table's load
        # is one job's; measured, 1 GB mostly in one table restored faster in one job).
        large = sum(f.plain_size for f in manifest.files) >= parallel_min_size
        rows = [t.rows or 0 for t in manifest.tables]
        spread = max(rows, default=0) * 2 <= sum(rows)
        jobs = _dump.threads() if large and spread and not single_transaction else 1
    keyring = _archive.keyring_for(manifest, keyring)
    chosen = _choose(manifest, tables) if tables else None
    shown = redact_url(parse_database_url(target_url).set(drivername="postgresql"))
    engine = _pgtools.engine_for(target_url, application_name="pgwarden-restore")
    try:
        with _pgtools.connect(engine) as conn:
            target_major, _ = _pgtools.server_version(conn)
            present = _check_target(conn, manifest, chosen, clean=clean, shown=shown)
            settings = session_options(conn)
            conn.rollback()
        need = max(target_major, _archive.major(manifest.client_version))
        binary = _pgtools.client_binary("pg_restore", min_major=need, into_psql=jobs == 1)
        with _archive.staging_directory(staging_dir, "pgwarden-restore-") as temp:
            options = [f"--format={manifest.dump_format}"]
            options += ["--clean", "--if-exists"] if clean else []
            options += [] if owners else ["--no-owner"]
            options += [] if privileges else ["--no-privileges"]
            if manifest.options.get("section") == "data":
                # Triggers (audit, foreign keys) would fire on each row and in any order.
                options.append("--disable-triggers")
            # Whole, into tables it creates: in parallel with the rows of each load known.
            split = (
                jobs > 1
                and chosen is None
                and not clean
                and not recount
                and manifest.options.get("section", "all") == "all"
                and (binary.path.parent / "psql").exists()
                and _pgtools.unsafe_pipe(binary) is None
                and not (binary.major >= 17 and target_major < 17)
            )
            lines: list[str] = []
            if chosen is not None or (jobs == 1 and not recount) or split:
                lines = backup_contents(
                    storage, backup_id, keyring=keyring, staging_dir=staging_dir
                )
            if chosen is not None:
                listing = Path(temp, "restore.list")
                kept = _toc.filter_list(lines, chosen, present)
                listing.write_text(kept)
                options.append(f"--use-list={listing}")
                lines = kept.splitlines()
            client = clients.client_args(target_url, application_name="pgwarden-pg_restore")

            def make(extra: list[str], jobs: int) -> RestoreCommand:
                return RestoreCommand(
                    binary, target_major, client, [*options, *extra], jobs=jobs, settings=settings
                )

            command = make([], jobs)
            # Restored in parallel in three steps, an archive streams from the storage.
            staged = not split and (manifest.dump_format == "directory" or command.jobs > 1)
            loaded: dict[str, int] = {}
            started = time.monotonic()
            if staged:  # every file proved while staged, before pg_restore starts
                archive = _archive.stage(
                    storage, manifest, entry.prefix, keyring, Path(temp), on_progress
                )
                command.run(source=archive)
            elif split:
                if precheck:
                    _archive.check_files(
                        storage, manifest, entry.prefix, keyring=keyring, on_progress=on_progress
                    )
                loaded = restore_backup_in_parallel(
                    make, storage, manifest, entry.prefix, keyring, lines, jobs, Path(temp)
                )
            else:
                if precheck:
                    _archive.check_files(
                        storage, manifest, entry.prefix, keyring=keyring, on_progress=on_progress
                    )
                stored = manifest.files[0]
                chunks = _archive.read_file(storage, manifest, entry.prefix, stored, keyring)
                total = stored.plain_size
                try:
                    command.run(
                        feed=held_back(counted(chunks, "restore", on_progress, total=total))
                    )
                except RestoreFailed:
                    chunks.finish()  # a damaged file is the verdict, whatever failed first
                    raise
                chunks.finish()
            seconds = time.monotonic() - started
        restored = chosen if chosen is not None else list(manifest.tables)
        if not split:
            loaded = {} if recount else _loaded(_toc.data_entries(lines), command.copied)
        with _pgtools.connect(engine) as conn:
            checks, blobs = _count_after(
                conn, manifest, restored, loaded, whole=chosen is None, clean=clean
            )
    finally:
        engine.dispose()
    result = RestoreResult(
        backup_id=manifest.id,
        target=shown,
        tables=tuple(t.qualified for t in restored),
        row_checks=checks,
        large_objects=blobs,
        seconds=seconds,
        mode="pg_restore | psql, in parallel" if split else command.mode,
        staged=staged,
        prechecked=staged or precheck,
        counted_on_load=bool(loaded) and all(c.table in loaded for c in checks),
    )
    if not result.ok:
        raise _mismatch(result)
    return result


def _mismatch(result: RestoreResult) -> RowCountMismatch:
    wrong = [
        f"{c.table} has {c.actual} rows, the backup {c.expected}"
        for c in result.row_checks
        if not c.ok
    ]
    if result.large_objects and result.large_objects[0] != result.large_objects[1]:
        wrong.append(
            f"{result.large_objects[1]} large objects, the backup {result.large_objects[0]}"
        )
    error = RowCountMismatch(
        f"restored backup {result.backup_id} into {result.target}, but the rows differ: "
        f"{'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}.",
        hint="The restore is committed: do not trust it. Verify the backup "
        f"(`pgwarden backup verify {result.backup_id}`) and restore another one.",
    )
    error.result = result
    return error
