"""Run PostgreSQL client programs: credentials kept off the command line, stderr kept.

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
from typing import IO

from sqlalchemy.engine import URL

from pgwarden.urls import parse_database_url, redact_text

__all__ = ["ClientArgs", "StderrTail", "client_args", "first_error", "spawn"]

log = logging.getLogger("pgwarden.db")


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
