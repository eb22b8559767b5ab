"""Restore an archive in parallel, knowing the rows each table loaded.

``pg_restore --jobs`` loads in parallel but says nothing of the rows it loaded, so the
restored tables would have to be counted afterwards: a scan of every table, which
also writes every page again to set its hint bits (and, with data checksums, logs a
full image of each). And it gives each table's rows to one job, so a database held
mostly by one table loads on one CPU. Instead, in three steps:

1. the definitions (``--section=pre-data``), in one transaction through psql;
2. the data (``--section=data``): one pg_restore writes it as SQL, and its ``COPY``
   rows are shared out in pieces among ``jobs`` psql sessions at once
   (:mod:`~pgwarden.backup._fanout`), large tables included; each psql prints the
   ``COPY n`` of every piece it loads;
3. indexes, constraints, triggers (``--section=post-data``) with ``pg_restore --jobs``,
   which builds them in parallel in the order their dependencies allow.

Nothing is staged. A directory-format archive is laid out with its ``toc.dat`` and a
named pipe for every other file, each filled from the storage when pg_restore opens
it (:class:`~pgwarden.backup._archive.Pipes`). A custom-format archive is streamed,
proved as it goes; the definitions and the post-data steps read only the archive's
table of contents, and the post-data step runs in one job (a stream cannot be read by
several). As with ``pg_restore --jobs``, the whole is not one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pgwarden.backup import _archive, _toc
from pgwarden.backup._archive import Pipes
from pgwarden.backup._pgrestore import RestoreCommand
from pgwarden.backup._streams import CheckedRead, held_back
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import RestoreFailed
from pgwarden.backup.manifest import Manifest
from pgwarden.backup.storage import Storage

__all__ = ["restore_backup_in_parallel", "restore_in_parallel"]


def restore_backup_in_parallel(
    command: Callable[[list[str], int], RestoreCommand],
    storage: Storage,
    manifest: Manifest,
    prefix: str,
    keyring: BackupKeyring | None,
    lines: list[str],
    jobs: int,
    temp: Path,
) -> dict[str, int]:
    """Restore a stored backup in the three steps, staging nothing; return the rows loaded.

    Its files are read again from the storage and proved as they go: the caller proves
    them all first, before the target is touched.
    """
    if manifest.dump_format == "directory":
        archive, pipes = _archive.pipes(storage, manifest, prefix, keyring, temp)
        try:
            return restore_in_parallel(command, lines, jobs, temp, archive=archive, pipes=pipes)
        finally:
            pipes.close()
    stored = manifest.files[0]
    return restore_in_parallel(
        command,
        lines,
        jobs,
        temp,
        stream=lambda: _archive.read_file(storage, manifest, prefix, stored, keyring),
    )


def restore_in_parallel(
    command: Callable[[list[str], int], RestoreCommand],
    lines: list[str],
    jobs: int,
    temp: Path,
    *,
    archive: Path | None = None,
    pipes: Pipes | None = None,
    stream: Callable[[], CheckedRead] | None = None,
) -> dict[str, int]:
    """Restore in the three steps; return the rows loaded, by ``schema.name``.

    The archive is the directory ``archive`` (whose data files ``pipes`` fills, if
    given), or what each call of ``stream`` yields anew.
    ``command(options, jobs)`` makes one pg_restore run with the restore's options and
    these. A table whose load cannot be matched to its ``COPY n`` is left out of the
    result (the caller counts it).
    """

    def run(step: RestoreCommand) -> None:
        if archive is not None:
            step.run(source=archive)
            return
        assert stream is not None
        chunks = stream()
        try:
            step.run(feed=held_back(chunks))
        except RestoreFailed:
            chunks.finish()  # a damaged file is the verdict, whatever failed first
            raise

    run(command(["--section=pre-data"], 1))
    share = [line for line in lines if line.strip() and not line.startswith(";")]
    listing = temp / "data.list"
    listing.write_text("\n".join(share) + "\n")
    step = command(["--section=data", f"--use-list={listing}"], 1)
    if pipes is not None:
        pipes.on_error = step.cancel  # a file failed its proof: nothing of it is committed
    tables = _toc.data_entries(share)
    loaded: dict[str, int] | None
    if archive is not None:
        try:
            loaded = step.run_fanned(jobs, tables, source=archive)
        except RestoreFailed:
            if pipes is not None and pipes.errors:
                raise pipes.errors[0] from None  # the verdict on the files, not the load
            raise
        if pipes is not None and pipes.errors:
            raise pipes.errors[0]
    else:
        assert stream is not None
        chunks = stream()
        try:
            loaded = step.run_fanned(jobs, tables, feed=held_back(chunks))
        except RestoreFailed:
            chunks.finish()  # a damaged file is the verdict, whatever failed first
            raise
    run(command(["--section=post-data"], jobs if archive is not None else 1))
    return loaded or {}
