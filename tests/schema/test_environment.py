"""`init_environment`: an async Alembic environment on pgwarden's engines, never overwriting."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgwarden.db.engines import create_engine
from pgwarden.errors import UserError
from pgwarden.schema import init_environment, status, upgrade
from schema_support import execute

REVISION = '''
"""Add a table."""
import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.create_table("notes", sa.Column("id", sa.BigInteger, primary_key=True))
    # The session settings pgwarden gives the async env's own connection.
    timeouts = op.get_bind().execute(
        sa.text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
    ).one()
    op.execute(f"COMMENT ON TABLE notes IS '{' '.join(timeouts)}'")


def downgrade():
    op.drop_table("notes")
'''


def test_the_written_environment_migrates_asynchronously(tmp_path: Path, pg_url: str) -> None:
    made = init_environment(tmp_path, models="learnhub.models:Base")
    assert made.config == tmp_path / "alembic.ini"
    env = (tmp_path / "migrations" / "env.py").read_text()
    assert "create_async_engine" in env and "'learnhub.models:Base'" in env
    compile(env, "env.py", "exec")
    (tmp_path / "migrations" / "versions" / "a1_notes.py").write_text(REVISION)
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = upgrade(
                conn, config=made.config, backup=False, lock_timeout=1.5, statement_timeout=90
            )
            assert [r.revision for r in result.applied] == ["a1"]
            assert status(conn, config=made.config).up_to_date
    finally:
        engine.dispose()
    comment = execute(pg_url, "SELECT obj_description('notes'::regclass, 'pg_class')")[0][0]
    assert comment == "1500ms 90s"


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "env.py").write_text("# mine\n")
    with pytest.raises(UserError, match="will not overwrite"):
        init_environment(tmp_path)
    assert (tmp_path / "migrations" / "env.py").read_text() == "# mine\n"
    assert not (tmp_path / "alembic.ini").exists()


def test_init_refuses_models_it_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot load the models"):
        init_environment(tmp_path, models="no_such_module:Base")
    assert list(tmp_path.iterdir()) == []


def test_without_alembic_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgwarden.errors import NotEnabled
    from pgwarden.schema import history
    from schema_support import LEARNHUB_INI

    monkeypatch.setitem(sys.modules, "alembic", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "alembic.config", raising=False)
    with pytest.raises(NotEnabled, match="alembic") as caught:
        history(config=LEARNHUB_INI)
    assert "pgwarden[migrations]" in (caught.value.hint or "")


def test_an_env_that_configures_logging_leaves_the_callers_loggers_alone(
    tmp_path: Path, pg_url: str
) -> None:
    from schema_support import SYNC_ENV, sync_env

    ini = sync_env(tmp_path / "env", {"a1": (None, "op.execute('SELECT 1')", "pass")})
    made = init_environment(tmp_path / "ini")  # an ini with logging sections
    ini.write_text(made.config.read_text().replace("%(here)s/migrations", str(tmp_path / "env")))
    env = tmp_path / "env" / "env.py"
    env.write_text(
        "from logging.config import fileConfig\n"
        + SYNC_ENV.replace(
            "config = context.config\n",
            "config = context.config\nfileConfig(config.config_file_name)\n",
        )
    )
    app = logging.getLogger("pgwarden.app_under_test")
    handlers = list(logging.getLogger().handlers)
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            upgrade(conn, config=ini, backup=False)
    finally:
        engine.dispose()
    assert not app.disabled and logging.getLogger().handlers == handlers
