"""Parse, normalise and redact database URLs.

Every URL pgwarden shows or logs goes through :func:`redact_url` first; free text that may
quote a URL or a libpq connection string (an error from a driver, a log line) goes
through :func:`redact_text`.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.util import immutabledict

from pgwarden.errors import ConfigError

__all__ = [
    "ASYNC_DRIVERS",
    "REDACTED",
    "SECRET_PARAMETERS",
    "SYNC_DRIVERS",
    "async_url",
    "is_secret_parameter",
    "libpq_url",
    "parse_database_url",
    "redact_text",
    "redact_url",
    "split_secrets",
    "sync_url",
]

REDACTED = "***"
SYNC_DRIVERS = ("psycopg",)
ASYNC_DRIVERS = ("psycopg", "asyncpg")
_ACCEPTED_DRIVERS = {"", "psycopg", "psycopg2", "psycopg_async", "asyncpg", "pg8000"}
_EXAMPLE = "postgresql://user:password@host:5432/dbname"

# Connection parameters that hold a secret (libpq's own, compared in any case).
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})

# user:password@ inside any scheme://; the user part may be empty (":secret@"). The
# password runs to the last @ before the host, so a stray @ in it is hidden too.
_URL_PASSWORD = re.compile(
    r"(?P<head>(?:[a-zA-Z][a-zA-Z0-9+.\-]*)?://[^:/?#@\s]*):(?P<pw>[^\s/?#]*)@"
)
# password=... in libpq key=value strings, query strings and environments (PGPASSWORD=).
# libpq quotes with '...' only, and a value may go on after a quoted part ('a'b), so the
# value runs on to the next space or the next parameter (&x=, ;x=): one with an & or ;
# in it is hidden whole.
_KV_PASSWORD = re.compile(
    r"""(?P<head>\b(?:pg)?(?:ssl)?(?:password|passwd|pwd)\s*=\s*)
    (?P<pw>(?:'(?:[^'\\]|\\.)*(?:'|\Z)|\\.|[^\s&;\\]|[&;](?![A-Za-z_]\w*=))+)""",
    re.IGNORECASE | re.VERBOSE,
)
# 'password': '...' in a dict's repr or JSON: one quoted string, or a bare word.
_DICT_PASSWORD = re.compile(
    r"""(?P<head>(?P<q>['"])(?:pg)?(?:ssl)?password(?P=q)\s*:\s*)
    (?P<pw>'(?:[^'\\]|\\.)*(?:'|\Z)|"(?:[^"\\]|\\.)*(?:"|\Z)|[^\s,}\]]+)""",
    re.IGNORECASE | re.VERBOSE,
)
# PASSWORD '...' in SQL: CREATE/ALTER ROLE|USER ... [ENCRYPTED] PASSWORD, a user
# mapping's OPTIONS (password '...'). Plain, E'', U&'' and dollar-quoted literals; an
# unterminated one is hidden to the end of the text.
_SQL_PASSWORD = re.compile(
    r"""(?P<head>\b(?i:password)\s+)
    (?P<pw>(?:[EeUu]&?)?'(?:[^'\\]|\\.|''|\\)*(?:'|\Z)
        | (?P<tag>\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$)(?s:.*?)(?:(?P=tag)|\Z))""",
    re.VERBOSE,
)


def is_secret_parameter(name: str) -> bool:
    """Return whether the connection parameter ``name`` holds a secret (any case)."""
    return name.lower() in SECRET_PARAMETERS


def redact_text(text: str) -> str:
    """Return ``text`` with every password it may hold replaced by ``***``.

    Covered: ``user:password@`` in URLs, ``password=``/``sslpassword=`` in query strings
    and libpq ``key=value`` strings (quoted or not), ``PGPASSWORD=`` in an environment,
    ``"password": ...`` in JSON or a dict, and ``PASSWORD '...'`` in SQL.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    text = _KV_PASSWORD.sub(_masked_pair, text)
    text = _DICT_PASSWORD.sub(_masked_pair, text)
    return _SQL_PASSWORD.sub(lambda m: f"{m['head']}'{REDACTED}'", text)


def _masked_pair(match: re.Match[str]) -> str:
    value = match["pw"]
    quoted = len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]
    quote = value[0] if quoted else ""
    return f"{match['head']}{quote}{REDACTED}{quote}"


def split_secrets(url: URL) -> tuple[URL, dict[str, str]]:
    """Return ``url`` without its secrets, and the secrets by lower-case parameter name.

    The user-info password and the ``password`` and ``sslpassword`` query parameters
    (any case) are taken out; a query parameter wins over the user-info password, as it
    does in libpq.
    """
    secrets: dict[str, str] = {}
    if url.password is not None:
        secrets["password"] = str(url.password)
    kept: dict[str, str | tuple[str, ...]] = {}
    for key, value in url.query.items():
        if is_secret_parameter(key):
            values = (value,) if isinstance(value, str) else value
            if values:
                secrets[key.lower()] = values[-1]
        else:
            kept[key] = value
    # URL.set(password=None) leaves the password in place: None there means "unchanged".
    return url._replace(password=None, query=immutabledict(kept)), secrets


def redact_url(url: str | URL) -> str:
    """Return ``url`` as text with its secrets, wherever they sit, replaced by ``***``.

    The user-info password and the ``password`` and ``sslpassword`` query parameters are
    hidden. Text that does not parse as a URL (a libpq ``key=value`` string, a malformed
    URL given by a user) is still scrubbed, so it can be quoted back in an error message
    without leaking what it holds.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            return redact_text(url)
    shown = parsed.set(
        query={
            key: REDACTED if is_secret_parameter(key) else value
            for key, value in parsed.query.items()
        }
    )
    # The query renders *** percent-encoded; redact_text writes it back plainly, and
    # catches whatever an odd URL hid from the parser (a second @, say).
    return redact_text(shown.render_as_string(hide_password=True))


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
