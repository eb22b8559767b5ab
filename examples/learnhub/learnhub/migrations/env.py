"""Alembic environment for learnhub: async, on pgwarden's engine factory."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from learnhub.models import Base
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from pgwarden.db.engines import create_async_engine
from pgwarden.errors import ConfigError

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet_logging"):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """Return the URL to migrate: set by code, ``-x url=...``, or DATABASE_URL."""
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise ConfigError(
            "no database URL to migrate.", hint="Set DATABASE_URL or pass -x url=postgresql://..."
        )
    return str(url)


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Run the migrations on an async connection."""
    engine = create_async_engine(database_url(), poolclass=NullPool, application_name="alembic")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
