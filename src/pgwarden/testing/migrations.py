"""Check an application's migrations from its tests: ``check_migrations(url, ...)``.

The same checks as ``pgwarden migrations check``: one head, a downgrade in every
revision, upgrade → downgrade → upgrade of each leaving the same schema, and the models
matching what the migrations build. They run in a scratch database created on the
server of ``url`` (and dropped after); the database of ``url`` is not touched::

    def test_migrations(pg_url):
        check_migrations(pg_url, config="alembic.ini", models="app.models:Base")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from pgwarden.db.engines import connect, create_engine
from pgwarden.schema.check import MigrationCheck, check

__all__ = ["check_migrations"]


def check_migrations(
    url: str | URL,
    *,
    config: str | Path | Any = "alembic.ini",
    models: Any = None,
    round_trip: bool = True,
) -> MigrationCheck:
    """Run the migration checks on ``url``'s server; fail the test with every problem found.

    ``models`` (a MetaData, a declarative base, or ``module:attr``) is compared with
    the migrated schema when given. Return the outcome when every check passes.
    """
    engine = create_engine(url, poolclass=sa.pool.NullPool, application_name="pgwarden-test")
    try:
        with connect(engine) as conn:
            result = check(conn, config=config, models=models, round_trip=round_trip)
    finally:
        engine.dispose()
    if not result.ok:
        lines = [f"{p.check}: {p.message}\n{p.detail}".rstrip() for p in result.problems]
        raise AssertionError("the migrations fail their checks:\n" + "\n\n".join(lines))
    return result
