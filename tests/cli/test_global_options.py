"""The global options work before or after the command, at any depth."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pgwarden.cli.main import cli


def test_json_after_the_command(pg_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", pg_url, "ping", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["server_version"]


def test_every_global_option_after_a_nested_command(tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "pgwarden.toml"
    config.write_text("")
    args = ["backup", "list", "--storage", str(tmp_path / "none"), "--json", "-v"]
    args += ["--database-url", pg_url, "--config", str(config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_the_same_value_at_two_levels_is_accepted(pg_url: str) -> None:
    args = ["--json", "--database-url", pg_url, "ping", "--json", "--database-url", pg_url]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["server_version"]


def test_two_values_at_two_levels_are_a_usage_error_naming_both() -> None:
    first, second = "postgresql://u:secret@127.0.0.1:1/a", "postgresql://u@127.0.0.1:1/b"
    result = CliRunner().invoke(
        cli, ["--database-url", first, "ping", "--database-url", second], prog_name="pgwarden"
    )
    assert result.exit_code == 2
    assert "postgresql://u:***@127.0.0.1:1/a (after `pgwarden`)" in result.stderr
    assert f"{second} (after `pgwarden ping`)" in result.stderr
    assert "secret" not in result.output


def test_verbosity_given_twice_differently_is_refused() -> None:
    result = CliRunner().invoke(cli, ["-v", "import", "runs", "-vv"], prog_name="pgwarden")
    assert result.exit_code == 2
    assert "-v (after `pgwarden`) and -vv (after `pgwarden import runs`)" in result.stderr


def test_audit_orm_prints_json_when_asked_after_the_command() -> None:
    result = CliRunner().invoke(cli, ["audit-orm", "learnhub.models", "--json"])
    assert result.exit_code == 0, result.output
    assert any(row["risk"] for row in json.loads(result.stdout))
