"""An anonymizing erase on columns a CHECK constraint guards: labels from a fixed list
stay, a fake the constraint refuses stops the erase naming it (nothing changed), and
``keep``/``clear`` let the caller choose per column."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.errors import UserError
from pgwarden.transfer import EraseReport, erase_user, rollback_run
from transfer_import_support import checksums, connection, run, scalar

TABLE = 'public."Mixed ""Case"""'

SCHEMA = r'''
CREATE DOMAIN postcode AS text CHECK (VALUE ~ '^[0-9]{5}$');
CREATE DOMAIN tier AS text CHECK (VALUE IN ('free', 'paid'));
CREATE TABLE "Mixed ""Case""" (
  id int PRIMARY KEY,
  email text NOT NULL,
  "select" text NOT NULL CHECK ("select" IN ('active', 'banned') OR "select" = 'new'),
  name text NOT NULL CHECK (name <> ''),
  plan tier,
  zip postcode,
  code char(3) NOT NULL
);
CREATE TABLE notes (
  id int PRIMARY KEY,
  owner int NOT NULL REFERENCES "Mixed ""Case""" ON DELETE CASCADE,
  body text CHECK (length(body) < 200)
);
INSERT INTO "Mixed ""Case""" VALUES
  (1, 'ann@example.org', 'active', 'Ann', 'paid', '12345', 'abc'),
  (2, 'bob@example.org', 'banned', 'Bob', 'free', '54321', 'xyz');
INSERT INTO notes VALUES (10, 1, 'call Ann at home'), (11, 2, 'Bob''s note');
'''


@pytest.fixture
def url(pg_url: str) -> str:
    run(pg_url, SCHEMA)
    return pg_url


def erase(url: str, **options: Any) -> EraseReport:
    with connection(url) as conn:
        return erase_user(conn, TABLE, 1, anonymize=True, salt="pepper", **options)


def row(url: str, user: int = 1) -> tuple[Any, ...]:
    with connection(url) as conn:
        return tuple(
            conn.exec_driver_sql(
                'SELECT email, "select", name, plan, zip, code FROM "Mixed ""Case""" WHERE id = %s',
                (user,),
            ).one()
        )


def test_a_fake_a_constraint_refuses_stops_the_erase_naming_it(url: str) -> None:
    before = checksums(url)
    with pytest.raises(UserError) as caught:
        erase(url)
    message = str(caught.value)
    assert "postcode_check" in message and '"Mixed ""Case""".zip' in message
    assert "nothing was changed" in message
    assert "--clear" in (caught.value.hint or "") and "--keep" in (caught.value.hint or "")
    assert checksums(url) == before
    assert scalar(url, "SELECT to_regclass('pgwarden.import_run') IS NULL")


def test_fixed_lists_are_kept_and_the_rest_anonymized(url: str) -> None:
    before = checksums(url)
    report = erase(url, clear=[f"{TABLE}.zip"])
    email, status, name, plan, zip_, code = row(url)
    assert email.startswith("anon-") and email.endswith("@example.invalid")
    assert name.startswith("anon-") and code == "ano"
    # Labels from a fixed list (the table's CHECK, the domain's CHECK) are kept.
    assert (status, plan) == ("active", "paid")
    assert zip_ is None
    kept = {(k.table, k.column) for k in report.kept}
    assert kept == {(TABLE, "select"), (TABLE, "plan")}
    # The other user is untouched, and a note with its own CHECK got its fake.
    assert row(url, 2) == ("bob@example.org", "banned", "Bob", "free", "54321", "xyz")
    assert scalar(url, "SELECT body FROM notes WHERE id = 10").startswith("anon-")
    assert report.run_id is not None
    with connection(url) as conn:
        rollback_run(conn, report.run_id)
    assert checksums(url) == before


def test_keep_leaves_a_column_and_clear_sets_null(url: str) -> None:
    report = erase(url, keep=[f"{TABLE}.zip", f"{TABLE}.name"], clear=["notes.body"])
    _, _, name, _, zip_, _ = row(url)
    assert (name, zip_) == ("Ann", "12345")
    assert scalar(url, "SELECT body FROM notes WHERE id = 10") is None
    assert {(k.column, k.reason) for k in report.kept} >= {
        ("zip", "kept as asked"),
        ("name", "kept as asked"),
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"clear": [f"{TABLE}.name"]}, "is NOT NULL, so it cannot be cleared"),
        ({"keep": [f"{TABLE}.zip"], "clear": [f"{TABLE}.zip"]}, "both --keep and --clear"),
        ({"keep": [f"{TABLE}.nope"]}, "has no column 'nope'"),
        ({"clear": ["zip"]}, "name a column as TABLE.COLUMN"),
    ],
)
def test_bad_column_choices_are_user_errors(
    url: str, options: dict[str, Any], expected: str
) -> None:
    before = checksums(url)
    with pytest.raises(UserError, match=expected):
        erase(url, **options)
    assert checksums(url) == before


def test_the_command_takes_keep_and_clear(url: str) -> None:
    runner = CliRunner()
    args = ["--database-url", url, "erase-user", "--user-table", TABLE, "--user-id", "1"]
    refused = runner.invoke(cli, [*args, "--keep", f"{TABLE}.zip"])
    assert refused.exit_code == 2 and "add --anonymize" in refused.output
    done = runner.invoke(
        cli, [*args, "--anonymize", "--clear", f"{TABLE}.zip", "--json"], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    assert row(url)[4] is None
    failed = runner.invoke(cli, [*args[:-1], "2", "--anonymize"])
    assert failed.exit_code == 2 and "postcode_check" in failed.output
    assert row(url, 2)[4] == "54321"


def test_a_check_naming_another_column_does_not_keep_this_one(url: str) -> None:
    # The CHECK lists kind's values but also names display, free text: neither column is
    # kept as a label, the fakes break the CHECK, and the erase says so; the caller then
    # chooses.
    run(
        url,
        "ALTER TABLE notes ADD COLUMN kind text NOT NULL DEFAULT 'guest',"
        " ADD COLUMN display text,"
        " ADD CONSTRAINT guest CHECK (kind = 'guest' OR display = 'Guest')",
        "UPDATE notes SET display = 'Guest'",
    )
    before = checksums(url)
    with pytest.raises(UserError, match="'guest'"):
        erase(url, clear=[f"{TABLE}.zip"])
    assert checksums(url) == before
    erase(url, clear=[f"{TABLE}.zip", "notes.display"], keep=["notes.kind"])
    assert scalar(url, "SELECT kind FROM notes WHERE id = 10") == "guest"
    assert scalar(url, "SELECT display FROM notes WHERE id = 10") is None


def test_keep_or_clear_on_a_key_is_a_user_error(url: str) -> None:
    before = checksums(url)
    with pytest.raises(UserError, match="is a key"):
        erase(url, keep=["notes.owner"], clear=[f"{TABLE}.zip"])
    assert checksums(url) == before
