from __future__ import annotations

import pytest
import sqlalchemy as sa
from learnhub.migrate import downgrade, upgrade
from learnhub.models import Base

from pgwarden.db.engines import create_engine

# The migrations create the API's role under this session's own name.
pytestmark = pytest.mark.usefixtures("learnhub_app_role")


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        result = set(names)
    engine.dispose()
    return result


def test_upgrade_downgrade_upgrade_on_an_empty_database(pg_url: str) -> None:
    upgrade(pg_url)
    created = _tables(pg_url)
    assert set(Base.metadata.tables) <= created
    assert any(name.startswith("page_views_") for name in created)  # partitions
    downgrade(pg_url, "base")
    assert _tables(pg_url) <= {"alembic_version"}
    upgrade(pg_url)
    assert _tables(pg_url) == created


def test_migration_creates_triggers_policies_and_search(pg_url: str) -> None:
    upgrade(pg_url)
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        triggers = set(
            conn.execute(
                sa.text(
                    "SELECT event_object_table || ':' || trigger_name"
                    " FROM information_schema.triggers"
                )
            ).scalars()
        )
        policies = conn.execute(sa.text("SELECT tablename FROM pg_policies")).scalars().all()
        rls = conn.execute(
            sa.text("SELECT relrowsecurity FROM pg_class WHERE relname = 'content'")
        ).scalar_one()
        gin = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_content_search_vector'")
        ).scalar_one()
    engine.dispose()
    assert any(t.startswith("users:") and "audit" in t for t in triggers)
    assert any(t.startswith("content:") and "audit" in t for t in triggers)
    assert any(t.startswith("content:") and "updated_at" in t for t in triggers)
    assert "content" in policies and rls is True
    assert "USING gin" in gin


def test_the_alembic_command_line_works_with_the_shipped_ini(pg_url: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    app_dir = Path(__file__).parents[2] / "examples" / "learnhub"
    alembic = Path(sys.executable).parent / "alembic"
    for step in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
        result = subprocess.run(
            [str(alembic), "-x", f"url={pg_url}", *step],
            cwd=app_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": str(app_dir)},
        )
        assert result.returncode == 0, result.stderr
    assert "users" in _tables(pg_url)
