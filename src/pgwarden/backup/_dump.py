"""Run pg_dump beside a count of rows in the same snapshot; choose its compression.

Helpers of :mod:`pgwarden.backup.logical`: the compression this pg_dump can do, its
output read so that a failure raises before anything is stored, and the row counter
that works on the snapshot's own connection while pg_dump runs.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path
from typing import cast

from sqlalchemy.engine import Connection

from pgwarden.backup import _pgtools, _tables
from pgwarden.backup.errors import DumpFailed
from pgwarden.backup.manifest import Compression, TableEntry
from pgwarden.backup.progress import BackupProgress
from pgwarden.backup.storage import CHUNK_SIZE
from pgwarden.db import clients
from pgwarden.db.binaries import Binary
from pgwarden.errors import UserError

__all__ = [
    "COMPRESSIONS",
    "RowCounter",
    "compress_arg",
    "directory_progress",
    "dump_failed",
    "read_dump",
    "resolve_compression",
    "stop",
]

COMPRESSIONS = ("auto", "zstd", "gzip", "none")
_DEFAULT_LEVEL = {"zstd": 3, "gzip": 6}
_LEVELS = {"zstd": (1, 22), "gzip": (1, 9)}


def resolve_compression(binary: Binary, method: str, level: int | None) -> Compression:
    """Return the compression to dump with: ``auto`` is zstd if this pg_dump has it, else gzip."""
    if method not in COMPRESSIONS:
        raise UserError(f"unknown compression {method!r}.", hint="Use auto, zstd, gzip or none.")
    zstd = binary.major >= 16 and _pgtools.supports_compression(binary.path, "zstd")
    if method == "auto":
        method = "zstd" if zstd else "gzip"
    elif method == "zstd" and not zstd:
        raise UserError(
            f"pg_dump {binary.version} at {binary.path} cannot compress with zstd.",
            hint="zstd needs pg_dump 16 or newer built with zstd; use --compression gzip, "
            "or auto to pick the best this pg_dump has.",
        )
    if method == "none":
        return Compression("none")
    low, high = _LEVELS[method]
    level = _DEFAULT_LEVEL[method] if level is None else level
    if not low <= level <= high:
        raise UserError(f"a {method} compression level is {low}-{high}, not {level}.")
    return Compression(method, level)


def compress_arg(binary: Binary, compression: Compression) -> str:
    """Return pg_dump's --compress option for ``compression``."""
    if binary.major >= 16:
        return f"--compress={compression.spec}"
    return f"--compress={compression.level or 0}"  # before 16: a gzip level, 0 for none


def directory_progress(directory: Path) -> BackupProgress:
    """Return how many bytes pg_dump has written into its output directory so far."""
    try:
        size = sum(p.stat().st_size for p in directory.iterdir())
    except OSError:
        size = 0
    return BackupProgress("dump", size)


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
