"""Write an Alembic environment for an async application, on pgwarden's settings.

The env.py it writes takes the database URL from what runs it (``pgwarden migrations``
hands it over), else from pgwarden's settings (``DATABASE_URL``, ``pgwarden.toml``);
connects with pgwarden's async engine factory (psycopg 3, or asyncpg); compares types
when autogenerating; and reads the models from ``PGWARDEN_MIGRATIONS_MODELS`` or the
``module:attr`` given at init. Nothing that exists is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgwarden.errors import UserError
from pgwarden.schema.check import load_models

__all__ = ["InitializedEnvironment", "init_environment"]

_INI = """\
# Alembic, run by `pgwarden migrations` (or `alembic`). The database URL comes from
# pgwarden's settings: DATABASE_URL, or --database-url.
[alembic]
script_location = %(here)s/{location}
prepend_sys_path = .
path_separator = os
file_template = %%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""

_ENV = '''\
"""Alembic environment: async, on pgwarden's settings and engine factory."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from pgwarden.config import load_settings
from pgwarden.db.engines import create_async_engine
from pgwarden.errors import ConfigError

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet_logging"):
    fileConfig(config.config_file_name)

# The models autogenerate compares with: module:attribute of a MetaData or a base.
MODELS = os.environ.get("PGWARDEN_MIGRATIONS_MODELS") or {models!r}
target_metadata = None
if MODELS:
    from pgwarden.schema import load_models

    target_metadata = load_models(MODELS)


def database_url() -> str:
    """Return the URL to migrate: given by pgwarden, ``-x url=...``, or the settings."""
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or load_settings().database_url
    )
    if not url:
        raise ConfigError("no database URL to migrate.", hint="Set DATABASE_URL.")
    return str(url)


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``--sql``, ``--dry-run``)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={{"paramstyle": "named"}},
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
'''

_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


@dataclass(frozen=True)
class InitializedEnvironment:
    """The files :func:`init_environment` wrote; ``config`` is the alembic.ini."""

    config: Path
    files: tuple[Path, ...]


def init_environment(
    directory: Path | str = ".",
    *,
    location: str = "migrations",
    models: str | None = None,
) -> InitializedEnvironment:
    """Write ``alembic.ini`` and ``location/`` (env.py, script.py.mako, versions/).

    ``models`` (``module:attr``) is checked to load, then written into env.py. Raise
    :class:`~pgwarden.errors.UserError`, writing nothing, if any of the files exists.
    """
    root = Path(directory)
    if not location or Path(location).is_absolute() or ".." in Path(location).parts:
        raise UserError(f"{location!r} is not a directory name under {root}.")
    if models is not None:
        load_models(models)
    scripts = root / location
    contents = {
        root / "alembic.ini": _INI.format(location=location),
        scripts / "env.py": _ENV.format(models=models),
        scripts / "script.py.mako": _MAKO,
        scripts / "versions" / ".gitkeep": "",
    }
    existing = [str(path) for path in contents if path.exists()]
    if existing:
        raise UserError(
            f"will not overwrite {', '.join(existing)}.",
            hint="Move them away, or pass another directory.",
        )
    for path, text in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    return InitializedEnvironment(root / "alembic.ini", tuple(contents))
