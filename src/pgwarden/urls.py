"""Parse, normalise and redact database URLs.

Every URL pgwarden shows or logs goes through :func:`redact_url` first; free text that may
quote a URL or a libpq connection string (an error from a driver, a log line) goes
through :func:`redact_text`.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pgwarden.errors import ConfigError

__all__ = [
    "ASYNC_DRIVERS",
    "REDACTED",
    "SYNC_DRIVERS",
    "async_url",
    "libpq_url",
    "parse_database_url",
    "redact_text",
    "redact_url",
    "sync_url",
]

REDACTED = "***"
SYNC_DRIVERS = ("psycopg",)
ASYNC_DRIVERS = ("psycopg", "asyncpg")
_ACCEPTED_DRIVERS = {"", "psycopg", "psycopg2", "psycopg_async", "asyncpg", "pg8000"}
_EXAMPLE = "postgresql://user:password@host:5432/dbname"

# user:password@ inside any scheme://; the user part may be empty (":secret@").
_URL_PASSWORD = re.compile(
    r"(?P<head>(?:[a-zA-Z][a-zA-Z0-9+.\-]*)?://[^:/?#@\s]*):(?P<pw>[^@\s]*)@"
)
# password=... in libpq keyword/value strings and query strings.
_KV_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|sslpassword)\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&;]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """Return ``text`` with every password in a URL or ``key=value`` pair replaced."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}", text)


def redact_url(url: str | URL) -> str:
    """Return ``url`` as text with its password, if any, replaced by ``***``.

    Text that does not parse as a URL is still scrubbed, so a malformed URL given by a
    user can be quoted back in an error message without leaking what it holds.
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact_text(url)


def parse_database_url(url: str | URL, *, source: str = "DATABASE_URL") -> URL:
    """Parse ``url`` as a PostgreSQL URL and return it with the ``postgresql`` backend.

    ``postgres://`` (as some hosting platforms write it) is accepted. ``source`` names
    where the URL came from, so the error can say which setting to fix.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        text = url.strip()
        if not text:
            raise ConfigError(
                f"{source} is empty.", hint=f"Give a PostgreSQL URL such as {_EXAMPLE}."
            )
        if text.startswith("postgres://"):
            text = "postgresql://" + text[len("postgres://") :]
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError):
            raise ConfigError(
                f"{source} is not a URL: {redact_text(text)!r}.",
                hint=f"Give a PostgreSQL URL such as {_EXAMPLE}.",
            ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise ConfigError(
            f"{source} names the {backend!r} database backend; pgwarden works with PostgreSQL.",
            hint=f"Give a PostgreSQL URL such as {_EXAMPLE}.",
        )
    if driver not in _ACCEPTED_DRIVERS:
        raise ConfigError(
            f"{source} names the driver {driver!r}, which pgwarden does not know.",
            hint="Use postgresql:// (psycopg 3) or postgresql+asyncpg:// for async code.",
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(
            f"{source} has port {parsed.port}, outside 1-65535.",
            hint=f"Give a PostgreSQL URL such as {_EXAMPLE}.",
        )
    name = "postgresql" if not driver else f"postgresql+{driver}"
    return parsed.set(drivername=name)


def sync_url(url: str | URL) -> URL:
    """Return ``url`` set to the synchronous psycopg 3 driver."""
    return parse_database_url(url).set(drivername="postgresql+psycopg")


def async_url(url: str | URL, *, driver: str | None = None) -> URL:
    """Return ``url`` set to an async driver: the one it names if async, else psycopg 3."""
    parsed = parse_database_url(url)
    named = parsed.drivername.partition("+")[2]
    if driver is None:
        driver = "asyncpg" if named == "asyncpg" else "psycopg"
    if driver not in ASYNC_DRIVERS:
        raise ConfigError(
            f"{driver!r} is not an async PostgreSQL driver.",
            hint=f"Choose one of: {', '.join(ASYNC_DRIVERS)}.",
        )
    return parsed.set(drivername=f"postgresql+{driver}")


def libpq_url(url: str | URL) -> str:
    """Return ``url`` as a libpq URI (``postgresql://...``), password included.

    For handing to a child process through the environment, never for showing.
    """
    parsed = parse_database_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
