"""``pgwarden advise indexes``: JSON and human output, the migration, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from advise_support import (
    build_shop,
    grow_learnhub_content,
    hypopg_available,
    run_learnhub_workload,
    scratch_databases,
)
from pgwarden.advise import advise_indexes, read_queries
from pgwarden.cli.main import cli
from pgwarden.db.engines import create_engine
from pgwarden.testing.servers import TestServer


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_learnhub_advice_as_json_then_applied(
    runner: CliRunner, seeded_url: str, pg_server: TestServer, tmp_path: Path
) -> None:
    grow_learnhub_content(seeded_url)
    queries = tmp_path / "workload.sql"
    queries.write_text(";\n".join(run_learnhub_workload(seeded_url, requests=60)) + ";\n")
    args = ["--database-url", seeded_url, "--json", "advise", "indexes", "--queries", str(queries)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] in {"hypopg", "scratch copy"}
    (index,) = report["recommendations"]
    assert (index["table"], index["columns"], index["name"]) == (
        "content",
        ["slug"],
        "ix_content_slug",
    )
    assert index["queries"][0]["factor"] >= 5 and index["size_bytes"] > 0
    assert scratch_databases(pg_server.admin) == []
    # Run the recommended SQL: the advisor then has nothing more to say.
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(index["create_sql"]))
    with engine.connect() as conn:
        advice = advise_indexes(conn, queries=read_queries(queries))
    engine.dispose()
    assert advice.recommendations == []


@pytest.fixture
def shop_url(pg_url: str, pg_engine: Engine) -> str:
    build_shop(pg_engine)
    return pg_url


def test_human_output_with_an_alembic_migration(
    runner: CliRunner, shop_url: str, tmp_path: Path
) -> None:
    queries = tmp_path / "slow.sql"
    queries.write_text(
        "SELECT * FROM orders WHERE status = 'pending' ORDER BY created_at DESC LIMIT 20;\n"
        "SELEC nonsense;\n"
    )
    args = ["--database-url", shop_url, "advise", "indexes", "--queries", str(queries)]
    result = runner.invoke(cli, [*args, "--method", "scratch", "--alembic"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "method: scratch copy - method 'scratch' was asked for" in out
    assert "1 queries analysed" in out and "1 recommended" in out
    assert (
        "CREATE INDEX CONCURRENTLY ix_orders_created_at_where_status ON public.orders"
        " (created_at) WHERE status = 'pending';"
    ) in out
    assert "1 queries skipped (1 does not parse)" in out
    assert "with op.get_context().autocommit_block():" in out
    assert "postgresql_concurrently=True" in out
    assert "down_revision = None" in out  # the shop has no alembic_version table
    compile(out[out.index('"""Add the indexes') :], "migration.py", "exec")


def test_nothing_to_recommend_says_so(runner: CliRunner, shop_url: str, tmp_path: Path) -> None:
    queries = tmp_path / "fast.sql"
    queries.write_text("SELECT * FROM orders WHERE id = $1")
    args = ["--database-url", shop_url, "advise", "indexes", "--queries", str(queries)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "method: none (nothing to try)" in result.stdout
    assert "No index to recommend" in result.stdout


def test_without_pg_stat_statements_the_error_says_what_to_do(
    runner: CliRunner, pg_url: str
) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "advise", "indexes"])
    assert result.exit_code == 2
    assert "error: pg_stat_statements is not installed in this database." in result.stderr
    assert "--queries FILE" in result.stderr


def test_hypopg_asked_for_where_there_is_none(
    runner: CliRunner, shop_url: str, pg_server: TestServer, tmp_path: Path
) -> None:
    if hypopg_available(pg_server.admin):
        pytest.skip("hypopg is available on this server")
    queries = tmp_path / "q.sql"
    queries.write_text("SELECT * FROM orders WHERE customer_id = $1")
    args = ["--database-url", shop_url, "--json", "advise", "indexes", "--queries", str(queries)]
    result = runner.invoke(cli, [*args, "--method", "hypopg"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "NotEnabled"
    assert "hypopg is not installed on the server" in error["message"]
