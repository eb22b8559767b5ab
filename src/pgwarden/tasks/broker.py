"""Where the jobs are queued: Redis, RabbitMQ, or PostgreSQL itself (the embedded default).

``[tasks] broker`` takes:

- ``redis://host:6379/0`` (or ``rediss://``): Redis. A job whose worker died is given to
  another worker after ``visibility_timeout``;
- ``amqp://user@host:5672/vhost``: RabbitMQ, which gives it to another at once;
- ``postgresql://...``: a PostgreSQL database, through kombu's SQLAlchemy transport; a
  job whose worker process dies is requeued by the worker, one whose whole worker dies
  (a host lost) is not: use Redis or RabbitMQ for a fleet;
- ``embedded`` (the default): the PostgreSQL database ``pgwarden_tasks`` on pgwarden's
  embedded server (``pgwarden server start``): no system service at all.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import sqlalchemy as sa

from pgwarden._sql import quote_identifier
from pgwarden.config import Settings
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.db.engines import connect, create_engine
from pgwarden.errors import ConfigError
from pgwarden.tasks.config import TasksConfig
from pgwarden.urls import parse_database_url, redact_url

__all__ = [
    "EMBEDDED_DATABASE",
    "broker_transport_options",
    "broker_url",
    "prepare_broker",
    "register_transport",
]

EMBEDDED_DATABASE = "pgwarden_tasks"
TRANSPORT = "pgwarden"  # kombu's SQLAlchemy transport, polling faster (_pgtransport)
_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def _embedded_url(settings: Settings) -> str:
    server = EmbeddedServer(settings.data_dir, port=settings.server_port)
    if not server.status().running:
        raise ConfigError(
            "the embedded broker needs pgwarden's embedded server, which is not running.",
            hint="Run `pgwarden server start`, or set [tasks] broker to a Redis or RabbitMQ URL.",
        )
    return server.url(EMBEDDED_DATABASE)


def broker_url(broker: str, settings: Settings) -> str:
    """Return the kombu URL of ``broker`` (``embedded``, a PostgreSQL, Redis or AMQP URL)."""
    if broker == "embedded":
        broker = _embedded_url(settings)
    scheme = broker.partition("://")[0].lower()
    if scheme in _SCHEMES:
        return broker
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        url = parse_database_url(broker, source="tasks.broker").set(drivername="postgresql+psycopg")
        return f"{TRANSPORT}+" + url.render_as_string(hide_password=False)
    raise ConfigError(
        f"[tasks] broker {redact_url(broker)!r} is not a broker URL.",
        hint="Use redis://host:6379/0, amqp://user@host:5672//, postgresql://... or embedded.",
    )


def register_transport() -> None:
    """Let kombu open ``pgwarden+postgresql+psycopg://`` URLs with the PostgreSQL transport."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault(TRANSPORT, "pgwarden.tasks._pgtransport:Transport")


def broker_transport_options(tasks: TasksConfig) -> dict[str, Any]:
    """Return the transport options: how soon Redis gives an orphaned job to another
    worker, how often a PostgreSQL broker is polled."""
    scheme = tasks.broker.partition("://")[0].lower()
    if tasks.broker == "embedded" or scheme.startswith("postgres"):
        return {"polling_interval": tasks.polling_interval}
    if scheme in ("redis", "rediss"):
        interval = max(1, min(10, int(tasks.visibility_timeout / 4)))
        return {
            "visibility_timeout": tasks.visibility_timeout,
            "unacked_restore_interval": interval,
            "unacked_restore_throttle": 1,
        }
    return {}


def prepare_broker(url: str) -> None:
    """Create what a PostgreSQL broker needs (its database, kombu's tables), once.

    Several workers and beat starting at once would race to create kombu's tables; this
    does it first, under an advisory lock. Other brokers need nothing.
    """
    if not url.startswith(f"{TRANSPORT}+"):
        return
    register_transport()
    target = parse_database_url(url.removeprefix(f"{TRANSPORT}+"))
    admin = create_engine(
        target.set(database="postgres"), application_name="pgwarden-tasks", poolclass=sa.NullPool
    )
    try:
        with connect(admin) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).first()
            if exists is None:
                name = quote_identifier(target.database or "")
                with suppress(sa.exc.DBAPIError):  # created meanwhile by another worker
                    conn.execute(sa.text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    from kombu.connection import Connection

    engine = create_engine(target, application_name="pgwarden-tasks", poolclass=sa.NullPool)
    try:
        with connect(engine) as conn, conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('pgwarden.broker'))"))
            with Connection(url) as broker:  # type: ignore[no-untyped-call]
                broker.default_channel  # noqa: B018 - opening the channel creates the tables
    finally:
        engine.dispose()
