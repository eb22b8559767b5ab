"""Run pg_dump beside a count of rows in the same snapshot; choose its compression.

Helpers of :mod:`pgwarden.backup.logical`: the compression this pg_dump can do, its
output read so that a failure raises before anything is stored, and the row counter
that works on the snapshot's own connection while pg_dump runs.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from io import BufferedReader
from pathlib import Path
from typing import cast

import psutil
from sqlalchemy.engine import Connection

from pgwarden.backup import _tables
from pgwarden.backup.errors import DumpFailed
from pgwarden.backup.manifest import Compression, StoredFile, TableEntry
from pgwarden.backup.storage import CHUNK_SIZE
from pgwarden.db import clients
from pgwarden.db.binaries import Binary
from pgwarden.errors import UserError

__all__ = [
    "COMPRESSIONS",
    "PARALLEL_MIN_SIZE",
    "FileFollower",
    "RowCounter",
    "choose_layout",
    "compress_arg",
    "dump_failed",
    "held_open",
    "read_dump",
    "resolve_compression",
    "stop",
    "threads",
]

COMPRESSIONS = ("auto", "zstd", "gzip", "none")
# zstd 1 with two threads compressed pg_dump's output at about 350 MB/s here, smaller
# than pg_dump's gzip 6 at about 30 MB/s; level 3 halved the speed for a few percent.
_DEFAULT_LEVEL = {"zstd": 1, "gzip": 6}
_LEVELS = {"zstd": (1, 22), "gzip": (1, 9)}
# From this size of a database's tables on, it is dumped in parallel where that pays.
PARALLEL_MIN_SIZE = 1024**3


def resolve_compression(binary: Binary, method: str, level: int | None) -> Compression:
    """Return the compression to back up with; ``auto`` is zstd.

    zstd is pgwarden's own: pg_dump writes its archive uncompressed and pgwarden
    compresses the stream on several threads as it stores it, whatever pg_dump's
    version (measured much faster than pg_dump's gzip, and than its single-threaded
    zstd). gzip is pg_dump's, inside the archive, as pgwarden did before.
    """
    del binary  # every pg_dump can write an uncompressed archive, or a gzip one
    if method not in COMPRESSIONS:
        raise UserError(f"unknown compression {method!r}.", hint="Use auto, zstd, gzip or none.")
    if method == "auto":
        method = "zstd"
    if method == "none":
        return Compression("none")
    low, high = _LEVELS[method]
    level = _DEFAULT_LEVEL[method] if level is None else level
    if not low <= level <= high:
        raise UserError(f"a {method} compression level is {low}-{high}, not {level}.")
    return Compression(method, level, "pgwarden" if method == "zstd" else "pg_dump")


def compress_arg(binary: Binary, compression: Compression) -> str:
    """Return pg_dump's --compress option for ``compression``."""
    if compression.by_pgwarden:
        compression = Compression("none")
    if binary.major >= 16:
        return f"--compress={compression.spec}"
    return f"--compress={compression.level or 0}"  # before 16: a gzip level, 0 for none


def threads() -> int:
    """Return how many threads to compress or dump with: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def choose_layout(
    dump_format: str,
    jobs: int | None,
    sizes: tuple[int, int],
    *,
    parallel_min_size: int,
) -> tuple[str, int]:
    """Return the format and jobs to dump with: ``auto`` is parallel where that pays.

    ``sizes`` are the bytes of all the tables and of the largest. pg_dump's workers
    share the tables out, one table each at a time, so ``auto`` picks the directory
    format with one job per CPU when the tables hold at least ``parallel_min_size``
    bytes and no table holds more than half of them (and there is more than one CPU);
    else the custom format in one job, one stream from pg_dump through pgwarden's
    compression (measured: a 1.3 GB database whose largest table held 80% of it took
    15 s so, 26 s in the directory format with two jobs). ``jobs`` above 1 alone picks
    the directory format.
    """
    if dump_format == "auto":
        if jobs is None:
            total, largest = sizes
            spread = largest * 2 <= total
            large = total >= parallel_min_size and spread and threads() > 1
            return ("directory", threads()) if large else ("custom", 1)
        return ("directory", jobs) if jobs > 1 else ("custom", 1)
    return dump_format, 1 if jobs is None else jobs


def held_open(pid: int) -> set[str] | None:
    """Return the names of the files pg_dump ``pid`` and its workers hold open.

    None when they cannot be read (then no file counts as closed before pg_dump exits).
    """
    try:
        leader = psutil.Process(pid)
        held = {Path(f.path).name for f in leader.open_files()}
        for worker in leader.children(recursive=True):
            try:
                held.update(Path(f.path).name for f in worker.open_files())
            except psutil.NoSuchProcess:
                continue  # a worker that has exited holds nothing open
    except psutil.Error:
        return None
    return held


class FileFollower:
    """Store one file of a directory-format dump, on a thread, as pg_dump writes it.

    The file is read as it grows, and to its end once :meth:`close` says pg_dump has
    closed it (pg_dump writes each file once, start to end, and never reopens it).
    ``store`` receives the chunks and returns what was stored.
    """

    def __init__(self, path: Path, store: Callable[[Iterator[bytes]], StoredFile]) -> None:
        self.path = path
        self.result: StoredFile | None = None
        self.error: BaseException | None = None
        self._closed = threading.Event()
        self._store = store
        self._thread = threading.Thread(target=self._run, name="pgwarden-dump-file", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Say pg_dump has closed the file: read it to its end, then finish."""
        self._closed.set()

    def join(self) -> None:
        """Wait for the file to be stored (or to fail)."""
        self._closed.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self.result = self._store(self._chunks())
            self.path.unlink()
        except BaseException as exc:  # handed to the dump's thread by the caller
            self.error = exc

    def _chunks(self) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            while True:
                closed = self._closed.is_set()  # before the read: then the read sees all
                chunk = handle.read(CHUNK_SIZE)
                if chunk:
                    yield chunk
                elif closed:
                    return
                else:
                    self._closed.wait(0.05)


def read_dump(proc: subprocess.Popen[bytes], errors: clients.StderrTail) -> Iterator[bytes]:
    """Yield pg_dump's output; raise at its end if pg_dump failed, so nothing is stored."""
    assert proc.stdout is not None
    stdout = cast(BufferedReader, proc.stdout)
    while chunk := stdout.read1(CHUNK_SIZE):
        yield chunk
    code = proc.wait()
    if code != 0:
        raise dump_failed(code, errors.text())


def dump_failed(code: int, stderr: str) -> DumpFailed:
    """Return the error of pg_dump exiting with ``code``."""
    return DumpFailed(
        f"pg_dump failed (exit code {code}): {clients.first_error(stderr, program='pg_dump')}",
        hint="Nothing was marked complete; the leftovers are removed by `pgwarden backup "
        "expire`. Rerun with -v to see pg_dump's whole message in the log.",
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End pg_dump if it still runs (the storage or the lock failed), and reap it."""
    if proc.poll() is None:
        proc.kill()
    if proc.stdout is not None:
        proc.stdout.close()
    proc.wait()


class RowCounter:
    """Count rows on the snapshot's connection, on a thread, while pg_dump runs."""

    def __init__(self, conn: Connection, tables: list[_tables.Table], method: str) -> None:
        self._conn = conn
        self._tables = tables
        self._method = method
        self._entries: list[TableEntry] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pgwarden-row-counts", daemon=True)

    def start(self) -> None:
        """Start counting."""
        self._thread.start()

    def _run(self) -> None:
        try:
            self._entries = _tables.count_rows(self._conn, self._tables, method=self._method)
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc

    def cancel(self) -> None:
        """Cancel a count in progress (pg_dump failed), and wait for the thread."""
        if self._thread.is_alive():
            raw = self._conn.connection.dbapi_connection
            if raw is not None:
                raw.cancel()
        self._thread.join()

    def result(self) -> list[TableEntry]:
        """Wait for the counts and return the tables with them."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._entries
