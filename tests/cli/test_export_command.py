"""``pgwarden export`` and ``pgwarden export-csv``, checked through the files and the library."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import pgwarden
from pgwarden.cli.main import cli
from pgwarden.transfer import read_bundle


def pgwarden_cli(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args], env=env)


def scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def test_export_with_filters_children_and_transforms(seeded_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "anonymize.toml"
    rules.write_text(
        'salt_env = "MY_SALT"\n[tables."public.users"]\nemail = "fake_email"\n'
        'display_name = { kind = "mask", keep = 2 }\n'
    )
    out = tmp_path / "bundle"
    result = pgwarden_cli(
        seeded_url, "--json", "export", str(out), "--entity", "learnhub.models:Content",
        "--where", "state = 'published' and id < 40", "--children", "1",
        "--transforms", str(rules), env={"MY_SALT": "pepper"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = {t["name"]: t for t in json.loads(result.stdout)["tables"]}
    bundle = read_bundle(out, verify=True)
    assert bundle.order.index("public.users") < bundle.order.index("public.content")
    assert {"public.comments", "public.ratings"} <= set(bundle.order)  # the children
    published = scalar(
        seeded_url, "SELECT count(*) FROM content WHERE state = 'published' AND id < 40"
    )
    assert report["public.content"]["direct"] == published  # closure may add more
    assert bundle.table("public.content").rows == report["public.content"]["rows"]
    assert "pepper" not in (out / "manifest.json").read_text()


def test_export_prints_per_table_counts(seeded_url: str, tmp_path: Path) -> None:
    result = pgwarden_cli(
        seeded_url, "export", str(tmp_path / "b"), "--table", "public.comments",
        "--where", "id = 5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "added by closure" in result.stdout
    assert "public.comments" in result.stdout and "public.users" in result.stdout
    result = pgwarden_cli(
        seeded_url, "export", str(tmp_path / "c"), "--table", "public.comments",
        "--where", "id = 5", "--nullable-parents", "null",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "public.categories" not in read_bundle(tmp_path / "c").order  # content.category_id


def test_export_in_json_prints_progress_lines_and_one_document(
    seeded_url: str, tmp_path: Path
) -> None:
    result = pgwarden_cli(
        seeded_url, "--json", "export", str(tmp_path / "b"), "--table", "public.tags",
        "--table", "public.roles", "--format", "jsonl",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["order"] == ["public.roles", "public.tags"]
    assert {t["name"]: t["rows"] for t in document["tables"]} == {
        "public.roles": scalar(seeded_url, "SELECT count(*) FROM roles"),
        "public.tags": scalar(seeded_url, "SELECT count(*) FROM tags"),
    }
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines and all(set(line) == {"table", "rows", "elapsed"} for line in lines)


def test_personal_data_export(seeded_url: str, tmp_path: Path) -> None:
    result = pgwarden_cli(seeded_url, "--json", "export", str(tmp_path / "me"), "--user-id", "3")
    assert result.exit_code == 0, result.output
    bundle = read_bundle(tmp_path / "me", verify=True)
    users = (tmp_path / "me" / bundle.table("public.users").file).read_text().splitlines()
    assert any(line.split("\t")[0] == "3" for line in users)
    profile = (tmp_path / "me" / bundle.table("public.profiles").file).read_text().splitlines()
    assert [line.split("\t")[0] for line in profile] == ["3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "public.users", "--where", "email = 'x' or"], "position 15"),
        (["--table", "public.users", "--where", "pwd = 1"], "unknown column 'pwd'"),
        (["--table", "public.nope"], "no table 'public.nope'"),
        (["--table", "public.users", "--since", "2026-01-01"], "need --date-column"),
    ],
)
def test_mistakes_exit_2_and_write_nothing(
    seeded_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = pgwarden_cli(seeded_url, "export", str(tmp_path / "out"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_missing_salt_is_a_user_error(seeded_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "t.toml"
    rules.write_text('[tables.users]\nemail = "hash"\n')
    result = pgwarden_cli(
        seeded_url, "export", str(tmp_path / "out"), "--table", "public.users",
        "--transforms", str(rules), "--salt-env", "NO_SUCH_SALT",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "NO_SUCH_SALT" in result.output


def test_export_csv_with_a_filter_and_a_transform(seeded_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "t.toml"
    rules.write_text('[tables.users]\nemail = "upper"\ndisplay_name = "null"\n')
    out = tmp_path / "users.csv"
    result = pgwarden_cli(
        seeded_url, "export-csv", "public.users", str(out), "--where", "id <= 10",
        "--transforms", str(rules),
    )  # fmt: skip
    assert result.exit_code == 2  # display_name is NOT NULL: nulling it would not load
    assert "NOT NULL" in result.output
    rules.write_text('[tables.users]\nemail = "upper"\nlast_login_at = "null"\n')
    result = pgwarden_cli(
        seeded_url, "export-csv", "public.users", str(out), "--where", "id <= 10",
        "--transforms", str(rules),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 10
    assert all(row["email"] == row["email"].upper() and row["last_login_at"] == "" for row in rows)


def test_export_csv_plain_is_copy_csv_with_a_header(seeded_url: str, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    result = pgwarden_cli(seeded_url, "--json", "export-csv", "public.tags", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert (
        len(rows)
        == json.loads(result.stdout)["rows"]
        == scalar(seeded_url, "SELECT count(*) FROM tags")
    )
    assert set(rows[0]) == {"id", "name"}


@pytest.mark.parametrize("command", ["export", "export-csv"])
def test_the_docs_cover_every_option(command: str) -> None:
    found = cli.commands[command]
    docs = Path(pgwarden.__file__).parents[2] / "docs" / "transfer.md"
    guide = docs.read_text()
    assert f"pgwarden {command}" in guide
    for param in found.params:
        if isinstance(param, click.Option):
            option = max(param.opts, key=len)
            if option != "--help":
                assert option in guide, f"docs/transfer.md does not mention {command} {option}"
