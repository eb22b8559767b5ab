"""``pgwarden import``, ``import runs|rollback|purge``, ``import-csv`` and ``erase-user``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import pgwarden
from pgwarden.cli.main import cli
from transfer_import_support import checksums, run, scalar, write_bundle


def pgwarden_(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def document(result: Result) -> Any:
    return json.loads(result.stdout)


def test_import_dry_run_then_import_then_rollback(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = str(write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"]))
    before = checksums(learnhub_url)
    dry = pgwarden_(learnhub_url, "--json", "import", bundle, "--dry-run")
    assert dry.exit_code == 0, dry.output
    report = document(dry)
    assert report["dry_run"] and report["ok"] and report["tables"][0]["inserted"] > 0
    assert any(json.loads(line)["event"] == "progress" for line in dry.stderr.splitlines())
    assert checksums(learnhub_url) == before

    done = pgwarden_(learnhub_url, "import", bundle)
    assert done.exit_code == 0, done.output
    number = int(re.search(r"as run (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    runs = document(pgwarden_(learnhub_url, "--json", "import", "runs"))["runs"]
    assert [(r["id"], r["kind"], r["status"]) for r in runs] == [(number, "import", "committed")]

    undone = pgwarden_(learnhub_url, "import", "rollback", str(number))
    assert undone.exit_code == 0, undone.output
    assert checksums(learnhub_url) == before
    again = pgwarden_(learnhub_url, "import", "rollback", str(number))
    assert again.exit_code == 2 and "rolled back already" in again.stderr


def test_conflicts_exit_1_and_are_listed(seeded_url: str, tmp_path: Path) -> None:
    bundle = str(write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"]))
    result = pgwarden_(seeded_url, "import", "bundle", bundle, "--dry-run")
    assert result.exit_code == 1
    assert "conflicts:" in result.stdout and '{"id": "1"}' in result.stdout
    assert "the import would fail" in result.stdout
    real = pgwarden_(seeded_url, "--json", "import", bundle)
    assert real.exit_code == 1
    assert document(real)["ok"] is False and document(real)["run_id"] is None
    upsert = pgwarden_(seeded_url, "import", bundle, "--mode", "upsert", "--conflict-key",
                       "tags:uq_tags_name")  # fmt: skip
    assert upsert.exit_code == 0, upsert.output


def test_a_refused_rollback_lists_the_rows_and_exits_1(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = str(write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"]))
    done = pgwarden_(learnhub_url, "--json", "import", bundle)
    number = document(done)["run_id"]
    run(learnhub_url, "UPDATE tags SET name = 'later' WHERE id = 1")
    refused = pgwarden_(learnhub_url, "import", "rollback", str(number), "--dry-run")
    assert refused.exit_code == 1
    assert "changed" in refused.stdout and '{"id": 1}' in refused.stdout
    assert "cannot be rolled back" in refused.stderr
    as_json = document(pgwarden_(learnhub_url, "--json", "import", "rollback", str(number)))
    assert as_json["total"] == 1 and as_json["changed"][0]["why"] == "changed"


def test_import_csv_and_user_errors(seeded_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "tags.csv"
    csv.write_text("id,name\n1,renamed\n")
    result = pgwarden_(seeded_url, "import-csv", "tags", str(csv), "--mode", "upsert")
    assert result.exit_code == 0, result.output
    assert scalar(seeded_url, "SELECT name FROM tags WHERE id = 1") == "renamed"
    missing = pgwarden_(seeded_url, "import-csv", "no_such_table", str(csv))
    assert missing.exit_code == 2 and "no table" in missing.stderr
    run(seeded_url, "CREATE TABLE extra (id int PRIMARY KEY)")
    bundle = str(write_bundle(seeded_url, tmp_path / "b", tables=["public.extra"]))
    run(seeded_url, "DROP TABLE extra")
    unknown = pgwarden_(seeded_url, "--json", "import", bundle)
    assert unknown.exit_code == 2
    assert document(unknown)["error"]["message"].startswith("the target has no table")


def test_erase_user_dry_run_erase_and_purge(seeded_url: str) -> None:
    user = scalar(seeded_url, "SELECT min(author_id) FROM content")
    before = checksums(seeded_url)
    dry = pgwarden_(seeded_url, "--json", "erase-user", "--user-id", str(user), "--dry-run")
    assert dry.exit_code == 0, dry.output
    tables = {t["table"]: t for t in document(dry)["tables"]}
    assert tables["public.users"]["deleted"] == 1 and tables["public.content"]["deleted"] > 0
    assert checksums(seeded_url) == before
    done = pgwarden_(seeded_url, "erase-user", "--user-table", "users", "--user-id", str(user))
    assert done.exit_code == 0, done.output
    assert "pgwarden import purge" in done.stdout
    assert scalar(seeded_url, "SELECT count(*) FROM users WHERE id = :u", u=user) == 0
    runs = document(pgwarden_(seeded_url, "--json", "import", "runs"))["runs"]
    assert runs[0]["kind"] == "erase" and runs[0]["journal_rows"] > 0
    purged = pgwarden_(seeded_url, "import", "purge", str(runs[0]["id"]))
    assert purged.exit_code == 0 and "Purged" in purged.stdout
    refused = pgwarden_(seeded_url, "import", "rollback", str(runs[0]["id"]))
    assert refused.exit_code == 2 and "purged" in refused.stderr


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("import", ["--mode", "--conflict-key", "--dry-run", "--transforms", "--salt-env",
                    "--batch-size", "--max-errors", "--fire-triggers", "--allow-schema-drift"]),
        ("import runs", ["--limit"]),
        ("import rollback", ["--dry-run"]),
        ("import purge", []),
        ("import-csv", ["--mode", "--conflict-key", "--dry-run"]),
        ("erase-user", ["--user-table", "--user-id", "--anonymize", "--also", "--salt-env",
                        "--purge-journal", "--dry-run"]),
    ],
)  # fmt: skip
def test_the_docs_cover_every_command_and_option(command: str, options: list[str]) -> None:
    guide = (Path(pgwarden.__file__).parents[2] / "docs" / "transfer.md").read_text()
    part = guide[guide.index("# Import") :] if "# Import" in guide else guide
    assert f"pgwarden {command}" in part
    for option in options:
        assert option in part, f"docs/transfer.md does not mention {command} {option}"
