"""A login role whose secrets sit in a URL's query string, and ways to catch them leaking."""

from __future__ import annotations

import logging
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pgwarden._sql import quote_identifier
from pgwarden.testing.servers import TestServer


@dataclass(frozen=True)
class SecretURL:
    """A URL that carries ``?password=...&sslpassword=...`` and no user-info password."""

    url: str
    password: str
    sslpassword: str

    @property
    def secrets(self) -> tuple[str, str]:
        return self.password, self.sslpassword

    def with_query(self, **query: str) -> str:
        """Return the URL with more query parameters (a bad port, another database...)."""
        return make_url(self.url).update_query_dict(query).render_as_string(hide_password=False)

    def assert_absent(self, *texts: str | bytes, where: str = "output") -> None:
        """Fail if any secret appears in ``texts``."""
        for text in texts:
            data = text if isinstance(text, bytes) else text.encode()
            for secret in self.secrets:
                assert secret.encode() not in data, f"a secret leaked into the {where}"


@pytest.fixture
def secret_url(pg_server: TestServer) -> Iterator[SecretURL]:
    """Yield a fresh database reached as a role whose password is in the query string.

    The role has that password, so the URL connects whether the server checks passwords
    or trusts local connections; the sslpassword is unused without a client key.
    """
    role = f"pgwarden_secret_{secrets.token_hex(4)}"
    password = f"S3cret{secrets.token_hex(8)}"
    sslpassword = f"SslS3cret{secrets.token_hex(8)}"
    with pg_server.admin.connect() as conn:
        conn.execute(
            sa.text(f"CREATE ROLE {quote_identifier(role)} LOGIN SUPERUSER PASSWORD '{password}'")
        )
    database = pg_server.create_database()
    base = make_url(pg_server.url(database))
    url = base._replace(password=None).set(username=role)
    url = url.update_query_dict({"password": password, "sslpassword": sslpassword})
    try:
        yield SecretURL(url.render_as_string(hide_password=False), password, sslpassword)
    finally:
        pg_server.drop_database(database)
        with pg_server.admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {quote_identifier(role)}"))


@dataclass
class Launch:
    """One child process pgwarden started: its argv as given and as the kernel shows it."""

    args: list[str]
    cmdline: str
    env: dict[str, str]
    service_file: str | None = None
    service_mode: int | None = None


@dataclass
class Launches:
    """Every child process started while the fixture is active."""

    seen: list[Launch] = field(default_factory=list)

    def named(self, program: str) -> list[Launch]:
        return [launch for launch in self.seen if Path(launch.args[0]).name == program]


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> Launches:
    """Record the command line and environment of every child process started."""
    record = Launches()
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            super().__init__(args, *rest, **options)
            env = dict(options.get("env") or {})
            # Read while the child runs (Popen returns once it has exec'd).
            try:
                cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                cmdline = ""
            launch = Launch([str(arg) for arg in args], cmdline.replace("\0", " "), env)
            if "PGSERVICEFILE" in env:
                service = Path(env["PGSERVICEFILE"])
                launch.service_file = service.read_text()
                launch.service_mode = service.stat().st_mode & 0o777
            record.seen.append(launch)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return record


@pytest.fixture
def raw_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Collect every log record, DEBUG included, before any filter rewrites it.

    pgwarden's CLI logger does not propagate to the root (where caplog listens), so a
    handler sits on it too; it runs before the CLI's own, redacting handler.
    """
    caplog.set_level(logging.DEBUG)
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("pgwarden")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
        captured.extend(caplog.records)


def record_text(record: logging.LogRecord) -> str:
    """Return all a log record holds as text: message, exception and extra fields."""
    parts = [record.getMessage(), str(vars(record))]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)
