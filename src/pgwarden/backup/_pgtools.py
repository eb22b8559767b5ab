"""Run pg_dump and pg_restore: the right binary, credentials kept off the command line.

A URL's password goes to the child through ``PGPASSWORD``; the command line (which any
user of the machine can read in ``ps``) gets the URL without it. Everything a child
writes to stderr is kept (the last lines), scrubbed of secrets, for the error message.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from pgwarden.db.binaries import Binary, find_binary
from pgwarden.db.engines import connection_error
from pgwarden.urls import parse_database_url, redact_text, sync_url

__all__ = [
    "StderrTail",
    "client_args",
    "client_binary",
    "engine_for",
    "server_version",
    "supports_compression",
]

log = logging.getLogger("pgwarden.backup")
_PROBE_DB = "host=/nonexistent-pgwarden-probe dbname=probe connect_timeout=1"


@dataclass(frozen=True, slots=True)
class ClientArgs:
    """How a client program reaches a database: ``--dbname`` text and environment."""

    dbname: str
    env: dict[str, str]


def client_args(url: str | URL, *, application_name: str) -> ClientArgs:
    """Return the ``--dbname`` URI (no password) and the environment carrying it."""
    parsed = parse_database_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    env.setdefault("PGAPPNAME", application_name)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    dbname = parsed.set(password=None).render_as_string(hide_password=False)
    return ClientArgs(dbname=dbname, env=env)


def engine_for(url: str | URL, *, application_name: str) -> Engine:
    """Return a one-connection-at-a-time engine on ``url``, no statement timeout."""
    return sa.create_engine(
        sync_url(url),
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={
            "application_name": application_name,
            "connect_timeout": 10,
            "options": "-c statement_timeout=0 -c lock_timeout=0",
        },
    )


def connect(engine: Engine) -> sa.Connection:
    """Open a connection, turning a failure to connect into a clear error."""
    try:
        return engine.connect()
    except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as exc:
        raise connection_error(exc, engine.url) from None


def server_version(conn: sa.Connection) -> tuple[int, str]:
    """Return the server's ``(major, "major.minor")``."""
    number = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    major = number // 10000
    return major, f"{major}.{number % 10000}"


def client_binary(name: str, *, min_major: int) -> Binary:
    """Return ``pg_dump`` or ``pg_restore`` at least as new as ``min_major``."""
    return find_binary(name, min_major=min_major)


@lru_cache(maxsize=32)
def supports_compression(path: Path, method: str) -> bool:
    """Return whether the pg_dump at ``path`` (16+) was built with ``method`` (zstd, lz4).

    pg_dump checks the compression before it connects, so a probe aimed at no server
    answers at once: "this build does not support compression with ZSTD", or a
    connection failure.
    """
    try:
        out = subprocess.run(
            [
                str(path),
                "--format=custom",
                f"--compress={method}",
                f"--file={os.devnull}",
                f"--dbname={_PROBE_DB}",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "1"},
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "does not support compression" not in out.stderr


class StderrTail:
    """Read a child's stderr on a thread, keeping its last lines, secrets scrubbed."""

    def __init__(self, stream: IO[bytes] | None, *, lines: int = 40) -> None:
        assert stream is not None, "spawn() pipes stderr"
        self._lines: deque[str] = deque(maxlen=lines)
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._lines.append(redact_text(line))

    def text(self, *, timeout: float = 10.0) -> str:
        """Return what was read, once the stream closed (or after ``timeout``)."""
        self._thread.join(timeout)
        return "\n".join(self._lines)


def spawn(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    stdin: int | IO[bytes] | None = None,
    stdout: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start a client program with its stderr piped (read it with :class:`StderrTail`).

    Its stdout goes nowhere unless piped: it must never mix with pgwarden's own output.
    """
    return subprocess.Popen(  # a PostgreSQL program found by find_binary
        list(args),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=dict(os.environ) if env is None else env,
        cwd="/",
    )


def first_error(text: str, *, program: str = "the program") -> str:
    """Return the most telling line of a client's stderr: the first ``error:`` line.

    The whole of it is logged at INFO (``pgwarden -v``).
    """
    if text:
        log.info("%s said:\n%s", program, text)
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "fatal:" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else "no message"
