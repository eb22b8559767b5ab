"""learnhub's migrations through pgwarden: checks, a backed-up upgrade, a guarded downgrade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from learnhub.models import Base

from pgwarden.backup import list_backups
from pgwarden.backup.storage import open_storage
from pgwarden.db.engines import create_engine
from pgwarden.schema import (
    DowngradeRefused,
    MigrationsNotFound,
    RevisionNotFound,
    check,
    downgrade,
    history,
    status,
    upgrade,
)
from pgwarden.testing.migrations import check_migrations
from schema_support import LEARNHUB_INI, execute, sync_env

pytestmark = pytest.mark.usefixtures("learnhub_app_role")


def _connect(url: str) -> Iterator[sa.Connection]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def conn(pg_url: str) -> Iterator[sa.Connection]:
    yield from _connect(pg_url)


@pytest.fixture
def seeded(seeded_url: str) -> Iterator[sa.Connection]:
    yield from _connect(seeded_url)


def _url(conn: sa.Connection) -> str:
    return conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_learnhub_migrations_pass_every_check(pg_url: str) -> None:
    result = check_migrations(pg_url, config=LEARNHUB_INI, models=Base)
    assert result.ok and result.heads == ("0002",) and result.revisions == 2
    assert result.skipped == ()


def test_a_model_change_without_its_migration_is_caught(conn: sa.Connection) -> None:
    models = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(models)
    models.tables["users"].append_column(sa.Column("nickname", sa.Text()))
    result = check(conn, config=LEARNHUB_INI, models=models, round_trip=False)
    (problem,) = result.problems
    assert problem.check == "models"
    assert "op.add_column('users', sa.Column('nickname'" in problem.detail  # the would-be revision


def test_the_pytest_helper_fails_the_test_with_every_problem(pg_url: str, tmp_path: Path) -> None:
    ini = sync_env(
        tmp_path / "env",
        {"a": (None, "pass", "pass"), "b": (None, "op.execute('SELECT 1')", "pass")},
    )
    with pytest.raises(AssertionError) as caught:
        check_migrations(pg_url, config=ini)
    assert "2 heads" in str(caught.value)
    assert "revision a has no downgrade" in str(caught.value)


def test_an_upgrade_backs_up_first_and_times_each_revision(
    conn: sa.Connection, tmp_path: Path
) -> None:
    storage = open_storage(tmp_path / "backups")
    before = status(conn, config=LEARNHUB_INI)
    assert before.current == () and [r.revision for r in before.pending] == ["0001", "0002"]
    first = upgrade(conn, config=LEARNHUB_INI, storage=storage, target="0001")
    assert first.backup is None and list_backups(storage) == []  # no table yet: no backup
    execute(_url(conn), "INSERT INTO organizations (name, slug) VALUES ('a', 'a')")
    result = upgrade(conn, config=LEARNHUB_INI, storage=storage)
    assert [r.revision for r in result.applied] == ["0002"]
    assert all(r.seconds > 0 and r.attempts == 1 for r in first.applied + result.applied)
    (taken,) = list_backups(storage)
    assert result.backup is not None and taken.manifest.id in result.backup
    after = status(conn, config=LEARNHUB_INI)
    assert after.up_to_date and after.current == ("0002",) and after.pending == ()
    assert [(r.revision, r.applied) for r in history(conn, config=LEARNHUB_INI)] == [
        ("0002", True),
        ("0001", True),
    ]
    again = upgrade(conn, config=LEARNHUB_INI, storage=storage)
    assert again.applied == () and len(list_backups(storage)) == 1  # nothing to do, no backup


def test_a_dry_run_upgrade_prints_the_sql_and_changes_nothing(conn: sa.Connection) -> None:
    result = upgrade(conn, config=LEARNHUB_INI, dry_run=True)
    assert result.sql is not None and "CREATE TABLE users" in result.sql
    assert status(conn, config=LEARNHUB_INI).current == ()
    assert execute(_url(conn), "SELECT to_regclass('users')")[0][0] is None


def test_a_downgrade_that_drops_populated_data_is_refused_unless_forced(
    seeded: sa.Connection,
) -> None:
    planned = downgrade(seeded, target="0001", backup=False, config=LEARNHUB_INI, dry_run=True)
    (loss,) = planned.data_losses
    assert (loss.table, loss.column) == ("public.content", "visibility") and loss.rows > 0
    with pytest.raises(DowngradeRefused, match=r"public\.content\.visibility") as caught:
        downgrade(seeded, target="0001", backup=False, config=LEARNHUB_INI)
    assert "--force" in (caught.value.hint or "")
    assert status(seeded, config=LEARNHUB_INI).current == ("0002",)  # nothing changed
    rows = seeded.execute(sa.text("SELECT count(visibility) FROM content")).scalar_one()
    seeded.rollback()
    assert rows == loss.rows
    result = downgrade(seeded, target="-1", backup=False, config=LEARNHUB_INI, force=True)
    assert [r.revision for r in result.applied] == ["0002"] and result.after == ("0001",)


def test_a_downgrade_to_base_names_every_populated_table(seeded: sa.Connection) -> None:
    planned = downgrade(seeded, target="base", config=LEARNHUB_INI, dry_run=True)
    dropped = {loss.table for loss in planned.data_losses if loss.column is None}
    assert {"public.users", "public.content", "public.organizations"} <= dropped
    assert status(seeded, config=LEARNHUB_INI).current == ("0002",)


def test_bad_inputs_are_clear_errors(conn: sa.Connection, tmp_path: Path) -> None:
    with pytest.raises(MigrationsNotFound, match="no Alembic config") as caught:
        status(conn, config=tmp_path / "alembic.ini")
    assert "migrations init" in (caught.value.hint or "")
    with pytest.raises(RevisionNotFound, match="nope"):
        upgrade(conn, config=LEARNHUB_INI, target="nope", backup=False)
    with pytest.raises(RevisionNotFound):
        upgrade(conn, config=LEARNHUB_INI, target="0003", backup=False)
    assert status(conn, config=LEARNHUB_INI).current == ()
    execute(
        _url(conn),
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('feedface')",
    )
    with pytest.raises(RevisionNotFound, match="feedface"):
        upgrade(conn, config=LEARNHUB_INI, backup=False)
