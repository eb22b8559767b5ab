"""Inline ignores and the [lint] settings of pyproject.toml or pgwarden.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgwarden.config import load_settings
from pgwarden.errors import ConfigError
from pgwarden.schema.lint import LintConfig, lint_sql, load_lint_config

OWN = LintConfig(squawk=False)
INDEX = "SET lock_timeout = '1s';\n"


def rules(sql: str, config: LintConfig = OWN) -> list[str]:
    return [f.rule for f in lint_sql(sql, config=config) if f.severity != "info"]


def test_an_ignore_comment_above_a_statement_silences_that_rule_there_only() -> None:
    sql = INDEX + (
        "-- pgwarden: ignore require-concurrent-index-creation -- a 40-row lookup table\n"
        "CREATE INDEX ix_a ON a (x);\n"
        "CREATE INDEX ix_b ON b (x);\n"
    )
    assert [(f.rule, f.line) for f in lint_sql(sql, config=OWN)] == [
        ("require-concurrent-index-creation", 4)
    ]


def test_an_ignore_comment_after_a_statement_on_its_line_is_its_own() -> None:
    sql = INDEX + (
        "CREATE INDEX ix_a ON a (x); -- pgwarden: ignore require-concurrent-index-creation\n"
        "CREATE INDEX ix_b ON b (x);\n"
    )
    assert [f.line for f in lint_sql(sql, config=OWN)] == [3]


def test_ignore_file_and_ignore_everything() -> None:
    sql = "/* pgwarden: ignore-file ban-drop-column */\nALTER TABLE t DROP COLUMN a;\n"
    assert "ban-drop-column" not in rules(sql)
    assert rules("-- pgwarden: ignore\nALTER TABLE t DROP COLUMN a;") == []
    # Only a comment is a directive: the same words in a string are data.
    assert "ban-drop-column" in rules("SELECT '-- pgwarden: ignore';\nALTER TABLE t DROP COLUMN a;")


def test_an_ignore_names_squawk_rules_too() -> None:
    sql = "-- pgwarden: ignore prefer-text-field\nCREATE TABLE t (a varchar(10));"
    assert "prefer-text-field" not in rules(sql, LintConfig())
    assert "prefer-text-field" in rules("CREATE TABLE t (a varchar(10));", LintConfig())


def test_pyproject_section_sets_rules_severity_and_transactions(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pgwarden.lint]\n"
        'disabled = ["ban-drop-column"]\n'
        'severity = { require-concurrent-index-creation = "high" }\n'
        "assume_in_transaction = true\n"
        'fail_on = "high"\n'
    )
    nested = tmp_path / "migrations"
    nested.mkdir()
    config = load_lint_config(start=nested).with_options(squawk=False)
    assert config.fail_on == "high" and config.assume_in_transaction
    sql = (
        "ALTER TABLE t DROP COLUMN a;\nCREATE INDEX ix ON t (a);\n"
        "CREATE INDEX CONCURRENTLY i2 ON t (b);"
    )
    found = {f.rule: f.severity for f in lint_sql(sql, config=config)}
    assert "ban-drop-column" not in found
    assert found["require-concurrent-index-creation"] == "high"
    assert found["ban-concurrent-index-creation-in-transaction"] == "high"


def test_pgwarden_toml_lint_table_wins_and_settings_accept_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.pgwarden.lint]\nfail_on = "low"\n')
    (tmp_path / "pgwarden.toml").write_text('log_level = "INFO"\n[lint]\nfail_on = "high"\n')
    assert load_lint_config().fail_on == "high"
    assert load_settings().log_level == "INFO"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('[tool.pgwarden.lint]\nfail_on = "urgent"\n', "not a severity"),
        ("[tool.pgwarden.lint]\nrules = []\n", "unknown keys: rules"),
        ('[tool.pgwarden.lint]\ndisabled = "ban-drop-column"\n', "list of rule names"),
        ("[tool.pgwarden.lint]\nlarge_rows = -1\n", "at least 0"),
        ("[tool.pgwarden.lint\n", "must be TOML"),
    ],
)
def test_bad_lint_config_is_a_config_error(tmp_path: Path, body: str, says: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_lint_config(start=tmp_path)
    assert says in f"{caught.value.message} {caught.value.hint}"


def test_no_project_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_lint_config(start=tmp_path / "x") == LintConfig()
