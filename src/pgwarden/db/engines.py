"""Build SQLAlchemy engines, sync and async, the way pgwarden and its users need them.

One factory for both: psycopg 3 by default (asyncpg accepted for async code), the pool
sized from settings, ``pool_pre_ping`` on, every connection named by
``application_name`` (so it can be told apart in ``pg_stat_activity``), JIT off (it
costs more than it saves on the short queries of a web application) and an optional
``statement_timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from pgwarden.config import Settings, load_settings
from pgwarden.errors import ConfigError, ConnectionFailed, PgwardenError
from pgwarden.urls import async_url, redact_text, redact_url, sync_url

if TYPE_CHECKING:  # sqlalchemy.ext.asyncio loads the ORM: only for those who ask for it
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["connect", "connection_error", "create_async_engine", "create_engine"]

log = logging.getLogger(__name__)


def _resolve(url: str | URL | None, settings: Settings | None) -> tuple[str | URL, Settings]:
    settings = settings or load_settings()
    chosen = url if url is not None else settings.database_url
    if chosen is None:
        raise ConfigError(
            "no database URL given.",
            hint="Set DATABASE_URL, pass --database-url, or start the embedded server "
            "with `pgwarden server start`.",
        )
    return chosen, settings


def _pool_args(settings: Settings) -> dict[str, Any]:
    # hide_parameters: a failed statement's error must not quote its values, which may be
    # passwords, personal data or the plaintext of an encrypted column.
    return {
        "hide_parameters": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": True,
        "echo": settings.db_echo,
    }


def _server_options(settings: Settings, application_name: str | None) -> dict[str, str]:
    options = {"application_name": application_name or settings.application_name, "jit": "off"}
    if settings.statement_timeout_ms:
        options["statement_timeout"] = str(settings.statement_timeout_ms)
    return options


def _connect_args(settings: Settings, application_name: str | None, driver: str) -> dict[str, Any]:
    """Return the driver's ``connect_args`` that set the server options on every connection."""
    options = _server_options(settings, application_name)
    if driver == "asyncpg":
        return {"server_settings": options, "timeout": settings.connect_timeout}
    name = options.pop("application_name")
    return {
        "application_name": name,
        "connect_timeout": settings.connect_timeout,
        "options": " ".join(f"-c {key}={value}" for key, value in options.items()),
    }


def _engine_args(
    settings: Settings, connect_args: dict[str, Any], engine_args: dict[str, Any]
) -> dict[str, Any]:
    args = {**_pool_args(settings), "connect_args": connect_args, **engine_args}
    if args.get("poolclass") is not None:  # pool sizes mean nothing to NullPool and kin
        for key in ("pool_size", "max_overflow", "pool_timeout"):
            args.pop(key, None)
    return args


def create_engine(
    url: str | URL | None = None,
    *,
    settings: Settings | None = None,
    application_name: str | None = None,
    **engine_args: Any,
) -> Engine:
    """Create a synchronous engine on psycopg 3 for ``url`` (default: ``DATABASE_URL``).

    ``engine_args`` go to :func:`sqlalchemy.create_engine` and win over the settings
    (``poolclass=NullPool`` for a one-shot command, say).
    """
    chosen, settings = _resolve(url, settings)
    connect_args = _connect_args(settings, application_name, "psycopg")
    engine = sa.create_engine(sync_url(chosen), **_engine_args(settings, connect_args, engine_args))
    log.debug("engine created for %s", redact_url(engine.url))
    return engine


def create_async_engine(
    url: str | URL | None = None,
    *,
    settings: Settings | None = None,
    driver: str | None = None,
    application_name: str | None = None,
    **engine_args: Any,
) -> AsyncEngine:
    """Create an async engine for ``url``: psycopg 3 unless the URL or ``driver`` says asyncpg."""
    chosen, settings = _resolve(url, settings)
    target = async_url(chosen, driver=driver)
    connect_args = _connect_args(settings, application_name, target.drivername.partition("+")[2])
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    engine = sa_create_async_engine(target, **_engine_args(settings, connect_args, engine_args))
    log.debug("async engine created for %s", redact_url(engine.url))
    return engine


_REASONS = (
    ("password authentication failed", "the server refused the user name or password",
     "Check the user and password in the URL."),
    ("no password supplied", "the server wants a password and the URL has none",
     "Put the password in the URL or in ~/.pgpass."),
    ("does not exist", "the database or role named in the URL does not exist",
     "Check the database name and user in the URL; list databases with psql -l."),
    ("connection refused", "nothing accepts connections there",
     "Check that the server is running and listening on that host and port."),
    ("timeout expired", "the server did not answer in time",
     "Check the host and port, the firewall, and PGWARDEN_CONNECT_TIMEOUT."),
    ("could not translate host name", "the host name does not resolve",
     "Check the host name in the URL."),
    ("name or service not known", "the host name does not resolve",
     "Check the host name in the URL."),
    ("no pg_hba.conf entry", "the server's pg_hba.conf does not admit this client",
     "Ask the server's administrator to allow this host, user and database."),
    ("too many clients", "the server has no free connection slots",
     "Close idle connections or raise max_connections."),
)  # fmt: skip


def connection_error(exc: BaseException, url: str | URL) -> PgwardenError:
    """Turn a driver's connection failure into a :class:`ConnectionFailed` that says why.

    The URL is shown redacted, and the driver's own words are scrubbed of secrets too.
    """
    shown = redact_url(make_url(url).set(drivername="postgresql")) if url else "the database"
    detail = redact_text(str(getattr(exc, "orig", None) or exc)).strip()
    first = detail.splitlines()[0] if detail else type(exc).__name__
    lowered = detail.lower()
    for needle, why, hint in _REASONS:
        if needle in lowered:
            return ConnectionFailed(f"cannot connect to {shown}: {why}.", hint=hint)
    return ConnectionFailed(
        f"cannot connect to {shown}: {first}",
        hint="Check the URL, and that the server is running and reachable.",
    )


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """Open a connection on ``engine``, turning a failure to connect into a clear error."""
    try:
        conn = engine.connect()
    # A ProgrammingError here is libpq refusing a parameter of the URL.
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.ProgrammingError,
        OSError,
    ) as exc:
        raise connection_error(exc, engine.url) from None
    with conn:
        yield conn
