"""`pgwarden doctor` and `pgwarden insight`, checked through the library's view."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.insight.doctor import CHECKS


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def problems(pg_url: str) -> str:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customer (id bigint PRIMARY KEY)"))
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id bigint PRIMARY KEY,"
                " customer_id bigint REFERENCES customer)"
            )
        )
    engine.dispose()
    return pg_url


def test_doctor_json_lists_findings_with_fixes(runner: CliRunner, problems: str) -> None:
    result = runner.invoke(cli, ["--database-url", problems, "--json", "doctor"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [report] = document["reports"]
    [finding] = [
        f
        for r in report["results"]
        for f in r["findings"]
        if f["check"] == "foreign_keys_without_index"
    ]
    assert finding["fix"] == "CREATE INDEX CONCURRENTLY ON public.orders (customer_id);"
    assert document["counts"]["warning"] >= 1
    assert {r["check"] for r in report["results"]} == {c.name for c in CHECKS}


def test_fail_on_turns_findings_into_exit_code_1(runner: CliRunner, problems: str) -> None:
    args = ["--database-url", problems, "doctor", "--check", "foreign_keys_without_index"]
    assert runner.invoke(cli, [*args, "--fail-on", "critical"]).exit_code == 0
    failing = runner.invoke(cli, [*args, "--fail-on", "warning"])
    assert failing.exit_code == 1
    assert "foreign key orders_customer_id_fkey" in failing.stdout
    assert "fix: CREATE INDEX CONCURRENTLY ON public.orders (customer_id);" in failing.stdout


def test_a_clean_database_passes(runner: CliRunner, pg_url: str) -> None:
    # Server-wide settings are the server's business: this database's checks only.
    args = ["--check", "indexes", "--check", "sequences", "--check", "constraints"]
    result = runner.invoke(cli, ["--database-url", pg_url, "doctor", *args, "--fail-on", "warning"])
    assert result.exit_code == 0, result.output
    assert "no findings" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "nope"], "unknown check nope"),
        (["--set", "unused_indexes.min_size_bytes=ten"], "is not a whole number"),
        (["--set", "unused_indexes"], "is not CHECK.THRESHOLD=VALUE"),
        (["--set", "unused_indexes.bogus=1"], "has no threshold bogus"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    runner: CliRunner, pg_url: str, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "doctor", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_list_describes_every_check(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--json", "doctor", "--list"])
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]
    assert [c["name"] for c in checks] == [c.name for c in CHECKS]
    [unused] = [c for c in checks if c["name"] == "unused_indexes"]
    assert unused["thresholds"] == {"max_scans": 0, "min_size_bytes": 10 * 1024**2}


def test_all_databases_checks_each_database_once(
    runner: CliRunner, problems: str, pg_server
) -> None:
    other = pg_server.create_database()
    try:
        result = runner.invoke(
            cli, ["--database-url", problems, "--json", "doctor", "--all-databases"]
        )
    finally:
        pg_server.drop_database(other)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    names = [r["database"] for r in document["reports"]]
    assert names[0] == sa.engine.make_url(problems).database
    assert other in names or other in {u["database"] for u in document["unreachable"]}
    assert len(names) == len(set(names))
    assert all(r["scopes"] == ["database"] for r in document["reports"][1:])


def test_insight_snapshot_and_growth(runner: CliRunner, problems: str) -> None:
    first = runner.invoke(cli, ["--database-url", problems, "--json", "insight", "snapshot"])
    assert first.exit_code == 0, first.output
    engine = sa.create_engine(problems.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customer SELECT generate_series(1, 50000)"))
    engine.dispose()
    runner.invoke(cli, ["--database-url", problems, "insight", "snapshot"])

    result = runner.invoke(cli, ["--database-url", problems, "--json", "insight", "growth"])
    assert result.exit_code == 0, result.output
    grown = {g["name"]: g for g in json.loads(result.stdout)["growth"]}
    assert grown["customer"]["delta_bytes"] > 1_000_000
    human = runner.invoke(cli, ["--database-url", problems, "insight", "growth"])
    assert "public.customer" in human.stdout


def test_insight_growth_without_history_says_what_to_do(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(cli, ["--database-url", pg_url, "insight", "growth"])
    assert result.exit_code == 2
    assert "pgwarden insight snapshot" in result.stderr
