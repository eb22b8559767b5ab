"""Read a big table's COPY output through a psql child, in the export's own snapshot.

Read through psycopg, each row of a COPY costs the export's process about a
microsecond of Python work: as much as the server spends producing it, and CPU time a
transform then cannot have. psql reads the same stream in C, in a process of its own,
and hands it over in big chunks through a pipe; the export becomes a pipeline, the
server and psql on one CPU while pgwarden transforms on another.

psql joins the export's transaction snapshot (``pg_export_snapshot()`` there, ``SET
TRANSACTION SNAPSHOT`` in psql), as pg_dump's parallel workers do: it sees exactly the
rows the export's connection sees. It connects with the export connection's own
parameters (psycopg's ``info``), its secrets in the environment, never on the command
line (:func:`pgwarden.db.clients.conninfo_args`). Only statements that read plain
tables can go this way: the temporary tables of row ids a subset uses are the export
connection's alone.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.db import clients
from pgwarden.db.binaries import find_binary
from pgwarden.errors import BinaryNotFound, ConfigError, ServerError
from pgwarden.urls import redact_text

__all__ = ["SnapshotReader"]

log = logging.getLogger("pgwarden.transfer")

_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


class SnapshotReader:
    """Start psql children that read COPY statements in the snapshot of an export.

    ::

        reader = SnapshotReader.open(conn, settings)  # None: read through conn instead
        for chunk in reader.copy("COPY public.t (a, b) TO STDOUT", chunk_size=1 << 18):
            ...
    """

    def __init__(
        self, psql: Path, client: clients.ClientArgs, snapshot: str, settings: Sequence[str]
    ) -> None:
        self.psql = psql
        self.client = client  # kept: a service file it made lives as long as it does
        self.dsn = client.dbname
        self.env = client.env
        self.snapshot = snapshot
        self.settings = tuple(settings)

    @classmethod
    def open(cls, conn: Connection, settings: Sequence[str]) -> SnapshotReader | None:
        """Return a reader for ``conn``'s open REPEATABLE READ transaction, or ``None``.

        ``None`` when there is no psql, the connection is not psycopg's, or the role may
        not export snapshots: the export then reads through ``conn``, only slower.
        ``settings`` are the ``SET LOCAL`` statements the export's transaction runs.
        """
        dbapi = conn.connection.dbapi_connection
        if not isinstance(dbapi, psycopg.Connection):
            return None
        try:
            psql = find_binary("psql")
        except BinaryNotFound:
            log.info("no psql: big tables are read through the export's connection")
            return None
        # Not in a savepoint, which could undo a failure: a subtransaction cannot export.
        allowed = "SELECT has_function_privilege('pg_catalog.pg_export_snapshot()', 'EXECUTE')"
        if not conn.execute(text(allowed)).scalar_one():
            log.info("pg_export_snapshot() is revoked: reading through the export's connection")
            return None
        snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            return None
        params = dbapi.info.get_parameters()
        if dbapi.info.password:
            params["password"] = dbapi.info.password
        try:
            client = clients.conninfo_args(params, application_name="pgwarden-export")
        except ConfigError as exc:
            log.info("psql cannot get the connection's secrets (%s): reading through it", exc)
            return None
        reader = cls(psql.path, client, snapshot, settings)
        return reader if reader.works() else None

    def works(self) -> bool:
        """Return whether psql connects and joins the snapshot: it may not, where the
        export's connection did (another libpq, a password the URL did not carry)."""
        try:
            probe = subprocess.run(
                self.args(), input=self.script("SELECT 1"), capture_output=True,
                env=self.env, timeout=30, check=False, cwd="/",
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("psql cannot be run (%s): reading through the export's connection", exc)
            return False
        if probe.returncode != 0:
            said = clients.first_error(
                redact_text(probe.stderr.decode("utf-8", "replace")), program="psql"
            )
            log.info("psql cannot read for the export (%s): reading through its connection", said)
            return False
        return True

    def args(self) -> list[str]:
        """Return psql's command line: the connection without its password, a script on stdin."""
        return [str(self.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn, "-f", "-"]

    def script(self, statement: str) -> bytes:
        """Return what psql runs: join the snapshot, set up the session, the COPY."""
        lines = [
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            f"SET TRANSACTION SNAPSHOT '{self.snapshot}'",
            *self.settings,
            statement,
            "COMMIT",
        ]
        return "".join(f"{line};\n" for line in lines).encode()

    def copy(self, statement: str, *, chunk_size: int) -> Iterator[bytes]:
        """Yield what ``statement`` (a ``COPY ... TO STDOUT``) sends, in chunks of whole lines.

        Lines, not rows: meant for COPY text and JSONL, one row a line. psql is stopped
        if the caller stops early; a failure raises :class:`ServerError` with psql's
        first error line.
        """
        proc = clients.spawn(self.args(), self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        errors = clients.StderrTail(proc.stderr)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            with proc.stdin:
                proc.stdin.write(self.script(statement))
            rest = b""
            while data := proc.stdout.read(chunk_size):
                if rest:
                    data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    yield data[:cut] if rest else data
            code = proc.wait()
            if code != 0 or rest:
                said = clients.first_error(errors.text(), program="psql")
                raise ServerError(
                    f"reading the rows through psql failed (exit code {code}): {said}",
                    hint="Run again with -v for psql's whole message.",
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
