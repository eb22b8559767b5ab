"""Data migrations in batches: each committed, every row once, progress as it goes."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from pgwarden.db.engines import create_engine
from pgwarden.errors import UserError
from pgwarden.schema import BatchProgress, batched_update, upgrade
from schema_support import execute, sync_env

TABLE = '"Mixed ""Case"""'
NAME = 'Mixed "Case"'  # the same table as Alembic's op names it


@pytest.fixture
def url(pg_url: str) -> str:
    execute(
        pg_url,
        f'CREATE TABLE {TABLE} ("select" int, "%k" text, v numeric, note text,'
        ' PRIMARY KEY ("select", "%k"))',
        f"INSERT INTO {TABLE} SELECT g % 7, 'k' || g, g, NULL FROM generate_series(1, 2500) AS g",
    )
    return pg_url


def test_a_batched_update_commits_each_batch_and_updates_every_row_once(url: str) -> None:
    seen: list[BatchProgress] = []
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            done = batched_update(
                conn,
                TABLE,
                set_={"v": "v * 2", "note": ":note"},
                where="v > :least",
                params={"least": 100, "note": "doubled"},
                batch_size=1000,
                on_progress=seen.append,
            )
            assert not conn.in_transaction()  # every batch committed
    finally:
        engine.dispose()
    assert (done.rows, done.batches) == (2400, 3)
    assert [p.rows for p in seen] == [1000, 2000, 2400] and seen[-1].total == 2400
    rows = execute(
        url,
        f"SELECT count(*) FILTER (WHERE note = 'doubled'),"
        f" sum(v) FILTER (WHERE note IS NULL), sum(v) FILTER (WHERE note IS NOT NULL)"
        f" FROM {TABLE}",
    )
    assert rows[0] == (2400, sum(range(1, 101)), 2 * sum(range(101, 2501)))


def test_a_batched_update_runs_inside_an_alembic_revision(url: str, tmp_path: Path) -> None:
    ini = sync_env(
        tmp_path / "env",
        {
            "0001": (
                None,
                f"""
                op.add_column({NAME!r}, sa.Column("w", sa.Numeric()))
                batched_update(op, {TABLE!r}, set_={{"w": "v + 1"}}, batch_size=700)
                """,
                f"op.drop_column({NAME!r}, 'w')",
            )
        },
    )
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = upgrade(conn, config=ini, backup=False)
            sql = upgrade(conn, config=ini, target="0001", dry_run=True).sql
    finally:
        engine.dispose()
    assert [r.revision for r in result.applied] == ["0001"]
    assert execute(url, f"SELECT count(*) FROM {TABLE} WHERE w = v + 1")[0][0] == 2500
    assert sql == ""  # at head already: nothing to print


def test_a_table_without_a_primary_key_is_refused(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE loose (v int)", "INSERT INTO loose VALUES (1)")
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn, pytest.raises(UserError, match="no primary key"):
            batched_update(conn, "loose", set_={"v": "v + 1"})
    finally:
        engine.dispose()
    assert execute(pg_url, "SELECT v FROM loose")[0][0] == 1
