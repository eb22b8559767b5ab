"""Helpers of the migration tests: learnhub's Alembic config, and small envs of their own."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import sqlalchemy as sa

ROOT = Path(__file__).parents[1]
LEARNHUB_INI = ROOT / "examples" / "learnhub" / "alembic.ini"

# A sync env.py: the URL from pgwarden (config.attributes) on a plain engine.
SYNC_ENV = """
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

config = context.config
url = config.attributes["url"]

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
"""


def sync_env(directory: Path, revisions: dict[str, tuple[str | None, str, str]]) -> Path:
    """Write a sync Alembic env in ``directory``; return its alembic.ini.

    ``revisions`` maps each id to ``(down_revision, upgrade body, downgrade body)``.
    """
    (directory / "versions").mkdir(parents=True)
    ini = directory / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {directory}\n")
    (directory / "env.py").write_text(SYNC_ENV)
    for rev, (down, up, back) in revisions.items():
        (directory / "versions" / f"{rev}.py").write_text(
            f'"""Revision {rev}."""\n'
            "import sqlalchemy as sa\nfrom alembic import op\n"
            "from pgwarden.schema import batched_update\n\n"
            f"revision = {rev!r}\ndown_revision = {down!r}\n\n\n"
            f"def upgrade():\n{_body(up)}\n\n\ndef downgrade():\n{_body(back)}\n"
        )
    return ini


def _body(body: str) -> str:
    return "\n".join("    " + line for line in dedent(body).strip().splitlines())


def execute(url: str, *statements: str) -> list[sa.Row[tuple[object, ...]]]:
    """Run ``statements`` on ``url`` in one transaction; return the last one's rows."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    rows: list[sa.Row[tuple[object, ...]]] = []
    try:
        with engine.begin() as conn:
            for statement in statements:
                result = conn.execute(sa.text(statement))
                rows = list(result) if result.returns_rows else []
    finally:
        engine.dispose()
    return rows
