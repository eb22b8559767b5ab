"""Run PostgreSQL client programs: credentials kept off the command line, stderr kept.

The command line is readable by any user of the machine (``ps``), so the ``--dbname`` a
child gets carries no secret: a password, from the URL's user info or its ``password``
query parameter, goes through ``PGPASSWORD``; an ``sslpassword`` (which has no
environment variable) through a service file only this user can read, named by
``PGSERVICEFILE`` and removed once the :class:`ClientArgs` is gone. Everything a child
writes to stderr is kept (the last lines), scrubbed of secrets, for the error message.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from pgwarden.errors import ConfigError
from pgwarden.urls import is_secret_parameter, parse_database_url, redact_text, split_secrets

__all__ = [
    "ClientArgs",
    "StderrTail",
    "client_args",
    "conninfo_args",
    "first_error",
    "spawn",
]

log = logging.getLogger("pgwarden.db")

_SERVICE = "pgwarden"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ClientArgs:
    """How a client program reaches a database: ``--dbname`` text and environment.

    ``dbname`` holds no secret; ``env`` does (``PGPASSWORD``, ``PGSERVICEFILE``). Keep
    this object while the children run: a service file it made goes with it.
    """

    dbname: str
    env: dict[str, str]


def client_args(url: str | URL, *, application_name: str) -> ClientArgs:
    """Return the ``--dbname`` URI (no secret in it) and the environment carrying them."""
    public, secrets = split_secrets(parse_database_url(url).set(drivername="postgresql"))
    env = dict(os.environ)
    env.setdefault("PGAPPNAME", application_name)
    service = _secrets_into(env, secrets, service_named="service" in public.query)
    if service is not None:
        public = public.update_query_dict({"service": _SERVICE})
    return _made(public.render_as_string(hide_password=False), env, service)


def conninfo_args(params: Mapping[str, str], *, application_name: str) -> ClientArgs:
    """Return a ``key=value`` ``--dbname`` (no secret in it) for libpq ``params``.

    ``params`` are all a connection used (psycopg's ``info.get_parameters()`` with its
    ``password``): a ``PGPASSWORD`` inherited from this process is dropped if they hold
    none.
    """
    public = {key: value for key, value in params.items() if not is_secret_parameter(key)}
    secrets = {key.lower(): value for key, value in params.items() if is_secret_parameter(key)}
    env = {**os.environ, "PGAPPNAME": application_name}
    env.pop("PGPASSWORD", None)
    service = _secrets_into(env, secrets, service_named="service" in public)
    if service is not None:
        public["service"] = _SERVICE
    return _made(make_conninfo(**public), env, service)


def _secrets_into(
    env: dict[str, str], secrets: dict[str, str], *, service_named: bool
) -> Path | None:
    """Put ``secrets`` in ``env``; return the directory of a service file made for them."""
    if "password" in secrets:
        env["PGPASSWORD"] = secrets["password"]
    ssl = secrets.get("sslpassword")
    if ssl is None:
        return None
    if service_named or os.environ.get("PGSERVICE"):
        raise ConfigError(
            "an sslpassword cannot reach PostgreSQL's client programs together with a "
            "connection service.",
            hint="Drop service= from the URL (and unset PGSERVICE), or put the sslpassword "
            "in that service's entry of the service file.",
        )
    if ssl != ssl.strip() or "\n" in ssl or "\r" in ssl:
        raise ConfigError(
            "the sslpassword begins or ends with a space or holds a line break, which "
            "PostgreSQL's service file cannot carry to its client programs.",
            hint="Re-encrypt the client key with a passphrase without them.",
        )
    directory = Path(tempfile.mkdtemp(prefix="pgwarden-conn-"))  # 0700
    path = directory / "pg_service.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"[{_SERVICE}]\nsslpassword={ssl}\n")
    env["PGSERVICEFILE"] = str(path)
    return directory


def _made(dbname: str, env: dict[str, str], service: Path | None) -> ClientArgs:
    args = ClientArgs(dbname=dbname, env=env)
    if service is not None:
        weakref.finalize(args, shutil.rmtree, service, ignore_errors=True)
    return args


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
