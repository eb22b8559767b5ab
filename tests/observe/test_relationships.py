from __future__ import annotations

import json

from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.observe.relationships import audit_relationships, import_models


def test_learnhub_relationships_are_rated() -> None:
    results = {r.relationship: r for r in audit_relationships(import_models("learnhub.models"))}
    assert results["Content.comments"].risk == "high"
    assert results["Content.comments"].direction == "one-to-many"
    assert results["Content.author"].risk == "medium"
    assert results["User.profile"].direction == "one-to-one"
    assert results["Content.tags"].direction == "many-to-many"


def test_the_command_lists_and_fails_on_risk() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["--json", "audit-orm", "learnhub.models"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert {"relationship", "direction", "strategy", "risk", "why", "suggestion"} <= set(rows[0])
    assert runner.invoke(cli, ["audit-orm", "learnhub.models", "--fail-on", "high"]).exit_code == 1


def test_a_module_that_does_not_import_is_a_user_error() -> None:
    result = CliRunner().invoke(cli, ["audit-orm", "no_such_package.models"])
    assert result.exit_code == 2
    assert "cannot import" in result.stderr
