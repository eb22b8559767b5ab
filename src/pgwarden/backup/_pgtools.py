"""Run pg_dump and pg_restore: the right binary, on an engine without timeouts.

Starting the programs, credentials and their stderr: :mod:`pgwarden.db.clients`.
"""

from __future__ import annotations

import logging
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from pgwarden.db.binaries import Binary, find_binary, lacks_restrict, program_version
from pgwarden.db.engines import connection_error
from pgwarden.urls import sync_url

__all__ = [
    "client_binary",
    "engine_for",
    "server_version",
    "supports_compression",
    "unsafe_pipe",
]

log = logging.getLogger("pgwarden.backup")
_PROBE_DB = "host=/nonexistent-pgwarden-probe dbname=probe connect_timeout=1"


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


def client_binary(name: str, *, min_major: int, into_psql: bool = False) -> Binary:
    """Return ``pg_dump`` or ``pg_restore`` at least as new as ``min_major``.

    ``into_psql``: its output is to be piped into the psql beside it, so the first one
    whose pair has the fix of CVE-2025-8714 is taken (see :func:`unsafe_pipe`).
    """
    return find_binary(name, min_major=min_major, refuse=unsafe_pipe if into_psql else None)


def unsafe_pipe(binary: Binary) -> str | None:
    """Return why piping ``binary``'s SQL into the psql beside it is unsafe, or None.

    Before the fix of CVE-2025-8714 (``\\restrict``), a crafted archive makes the SQL
    pg_restore writes carry psql meta-commands, which psql runs on this machine. With no
    psql beside it, nothing is piped.
    """
    psql = binary.path.parent / "psql"
    if not psql.exists():
        return None
    found = program_version(psql)
    pair = [binary]
    if found is not None:
        pair.append(Binary("psql", psql, found[0], found[1], binary.source))
    old = [f"{b.name} {b.version}" for b in pair if lacks_restrict(b)]
    if found is None:
        old.append("psql (of no known version)")
    return f"{' and '.join(old)} lack the fix of CVE-2025-8714" if old else None


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
