"""Run learnhub's Alembic migrations from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str, *, app_password: str | None = None) -> Config:
    """Return an Alembic config for ``url`` that needs no ini file.

    ``app_password`` is the password the migrations give the API's role (default:
    ``learnhub.app_role.app_password``); it travels in memory, never in the config text.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url  # not a main option: a password may hold a '%'
    config.attributes["quiet_logging"] = True
    if app_password is not None:
        config.attributes["app_password"] = app_password
    return config


def upgrade(url: str, revision: str = "head", *, app_password: str | None = None) -> None:
    """Upgrade the database at ``url`` (the owner's) to ``revision``."""
    command.upgrade(alembic_config(url, app_password=app_password), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at ``url`` to ``revision``."""
    command.downgrade(alembic_config(url), revision)
