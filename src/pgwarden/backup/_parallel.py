"""Restore a staged archive in parallel, knowing the rows each table loaded.

``pg_restore --jobs`` loads in parallel but says nothing of the rows it loaded, so the
restored tables would have to be counted afterwards: a scan of every table, which
also writes every page again to set its hint bits (and, with data checksums, logs a
full image of each). Instead, in three steps:

1. the definitions (``--section=pre-data``), in one transaction through psql;
2. the data (``--section=data``), split into ``jobs`` lists of tables balanced by the
   manifest's row counts, each list piped into a psql of its own, all at once; each
   psql prints the ``COPY n`` of every table it loads;
3. indexes, constraints, triggers (``--section=post-data``) with ``pg_restore --jobs``,
   which builds them in parallel in the order their dependencies allow.

Nothing is staged. A directory-format archive is laid out with its ``toc.dat`` and a
named pipe for every other file, each filled from the storage when pg_restore opens
it (:class:`~pgwarden.backup._archive.Pipes`). A custom-format archive is streamed:
each data list reads a stream of its own (proved as it goes; pg_restore skips the
other lists' tables), the definitions and the post-data steps read only the archive's
table of contents, and the post-data step runs in one job (a stream cannot be read by
several). As with
``pg_restore --jobs``, the whole is not one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from pgwarden.backup import _archive, _toc
from pgwarden.backup._archive import Pipes
from pgwarden.backup._pgrestore import RestoreCommand
from pgwarden.backup._streams import CheckedRead, held_back
from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import RestoreFailed
from pgwarden.backup.manifest import Manifest
from pgwarden.backup.storage import Storage

__all__ = ["restore_backup_in_parallel", "restore_in_parallel", "split_data"]


def split_data(lines: list[str], rows: Mapping[str, int], jobs: int) -> list[list[str]]:
    """Return ``jobs`` lists of the archive's entries, the tables' data shared out by rows.

    Every ``TABLE DATA`` entry goes to the list with the fewest rows so far, the largest
    table first; every other entry (sequence values, large objects) goes to the first
    list. Lists keep the archive's order; empty ones are dropped.
    """
    tables = _toc.data_entries(lines)
    weight: dict[str, int] = {}
    for line, table in zip(_data_lines(lines), tables, strict=True):
        weight[line] = max(1, rows.get(table, 0))
    shares: list[list[str]] = [[] for _ in range(max(1, jobs))]
    totals = [0] * len(shares)
    owner: dict[str, int] = {}
    for line in sorted(weight, key=lambda key: -weight[key]):
        least = totals.index(min(totals))
        owner[line] = least
        totals[least] += weight[line]
    for line in lines:
        if line.startswith(";") or not line.strip():
            continue
        shares[owner.get(line, 0)].append(line)
    return [share for share in shares if share]


def _data_lines(lines: list[str]) -> list[str]:
    """Return the lines of the ``TABLE DATA`` entries, as :func:`_toc.data_entries` reads."""
    return [line for line in lines if _toc.data_entries([line])]


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
    rows = {t.qualified: t.rows or 0 for t in manifest.tables}
    if manifest.dump_format == "directory":
        archive, pipes = _archive.pipes(storage, manifest, prefix, keyring, temp)
        try:
            return restore_in_parallel(
                command, lines, rows, jobs, temp, archive=archive, pipes=pipes
            )
        finally:
            pipes.close()
    stored = manifest.files[0]
    return restore_in_parallel(
        command,
        lines,
        rows,
        jobs,
        temp,
        stream=lambda: _archive.read_file(storage, manifest, prefix, stored, keyring),
    )


def restore_in_parallel(
    command: Callable[[list[str], int], RestoreCommand],
    lines: list[str],
    rows: Mapping[str, int],
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
    errors: list[BaseException] = []
    runs: list[tuple[list[str], RestoreCommand]] = []
    for number, share in enumerate(split_data(lines, rows, jobs)):
        listing = temp / f"data-{number}.list"
        listing.write_text("\n".join(share) + "\n")
        runs.append((share, command(["--section=data", f"--use-list={listing}"], 1)))

    if pipes is not None:

        def stop_loads() -> None:  # a file failed its proof: nothing of it is committed
            for _, step in runs:
                step.cancel()

        pipes.on_error = stop_loads

    def load(step: RestoreCommand) -> None:
        try:
            run(step)
        except BaseException as exc:  # raised in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(step,), daemon=True) for _, step in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if pipes is not None and pipes.errors:
        raise pipes.errors[0]  # the verdict on the files, not the loads it stopped
    if errors:
        raise errors[0]
    loaded: dict[str, int] = {}
    for share, step in runs:
        entries = _toc.data_entries(share)
        copied = step.copied
        if copied is not None and len(copied) == len(entries) == len(set(entries)):
            loaded.update(zip(entries, copied, strict=True))
    run(command(["--section=post-data"], jobs if archive is not None else 1))
    return loaded
