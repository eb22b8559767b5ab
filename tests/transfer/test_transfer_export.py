"""Bundles from learnhub: chosen rows with their closure, anonymized, load into an empty copy.

The proof of a bundle is loading it: each file goes into an empty learnhub database
(migrated, no rows) with plain ``COPY FROM`` in the manifest's order, foreign keys
enforced, and nothing fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine

from pgwarden.db.engines import create_engine
from pgwarden.errors import UserError
from pgwarden.transfer.bundle import BundleError, read_bundle
from pgwarden.transfer.copytext import format_copy_row, parse_copy_line
from pgwarden.transfer.export import ExportResult, export_bundle, export_personal_data
from pgwarden.transfer.progress import TransferProgress
from pgwarden.transfer.transforms import TransformSpec
from transfer_export_support import load_with_copy

SALT = b"test-salt-not-a-secret"

ANONYMIZE = {
    "tables": {
        "public.users": {
            "email": "fake_email",
            "display_name": "fake_name",
            "password_hash": {"kind": "constant", "value": "!"},
        },
        "public.profiles": {"bio": "fake_text", "phone": "null", "avatar_url": "null"},
        "public.user_sessions": {"ip_address": "null", "user_agent": "null"},
    }
}


@pytest.fixture
def seeded(seeded_url: str) -> Iterator[Engine]:
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def empty(learnhub_url: str) -> Iterator[Engine]:
    engine = create_engine(learnhub_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def export(engine: Engine, out: Path, **options: object) -> ExportResult:
    with engine.connect() as conn:
        return export_bundle(conn, out, **options)  # type: ignore[arg-type]


def values(conn: Connection, query: str, **params: object) -> list[str]:
    return [str(v) for v in conn.execute(sa.text(query), params).scalars()]


def window(engine: Engine) -> tuple[str, str]:
    """Return a date range holding about a third of the users."""
    with engine.connect() as conn:
        low, high = conn.execute(
            sa.text(
                "SELECT percentile_disc(0.3) WITHIN GROUP (ORDER BY created_at)::text,"
                " percentile_disc(0.6) WITHIN GROUP (ORDER BY created_at)::text FROM users"
            )
        ).one()
    return low, high


def test_users_in_a_range_with_content_and_comments_anonymized_load_into_an_empty_database(
    seeded: Engine, empty: Engine, tmp_path: Path
) -> None:
    since, until = window(seeded)
    spec = TransformSpec.from_mapping(ANONYMIZE, salt=SALT)
    events: list[TransferProgress] = []
    result = export(
        seeded, tmp_path / "out",
        tables=["public.users"], date_column="created_at", since=since, until=until,
        children=2, transforms=spec, on_progress=events.append,
    )  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)
    names = set(bundle.order)
    assert {"public.users", "public.content", "public.comments", "public.organizations"} <= names

    with seeded.connect() as conn:
        chosen = values(
            conn,
            "SELECT id FROM users WHERE created_at >= :s AND created_at < :u",
            s=since,
            u=until,
        )
        # every user in the bundle: chosen ones, and the parents closure brought in
        originals = values(conn, "SELECT email FROM users") + values(
            conn, "SELECT display_name FROM users"
        )
        authored = values(conn, "SELECT count(*) FROM content WHERE author_id = ANY(:ids)",
                          ids=[int(i) for i in chosen])  # fmt: skip
    report = {t.name: t for t in result.tables}
    assert report["public.users"].direct == len(chosen)
    assert report["public.users"].added > 0  # commenters on the chosen users' content
    assert report["public.content"].rows >= int(authored[0]) > 0

    # no original e-mail or name anywhere in the bundle
    data = b"".join((tmp_path / "out" / t.file).read_bytes() for t in bundle.tables)
    leaked = [value for value in originals if value.encode() in data]
    assert leaked == []

    # counts in the manifest are the files' lines
    for table in bundle.tables:
        assert table.rows == (tmp_path / "out" / table.file).read_bytes().count(b"\n")

    # the manifest records what was done, never the salt
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert SALT.decode() not in manifest
    kinds = {(n["table"], n["column"], n["kind"]) for n in json.loads(manifest)["transforms"]}
    assert ("public.users", "email", "fake_email") in kinds

    # it loads into an empty learnhub with every foreign key checked
    loaded = load_with_copy(empty, bundle)
    assert loaded == {t.qualified: t.rows for t in bundle.tables}
    with empty.connect() as conn:
        assert values(conn, "SELECT count(*) FROM users") == [
            str(bundle.table("public.users").rows)
        ]
        emails = values(conn, "SELECT email FROM users")
    assert all(email.endswith(("@example.com", "@example.net", "@example.org")) for email in emails)

    # progress came per table, ending at each table's rows
    last = {e.table: e.rows for e in events}
    assert last == {t.qualified: t.rows for t in bundle.tables}


def test_jsonl_bundle_loads_the_same_rows(seeded: Engine, tmp_path: Path) -> None:
    result = export(
        seeded, tmp_path / "out", tables=["public.content"],
        where=["state = 'published'"], format="jsonl",
    )  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)
    table = bundle.table("public.content")
    assert table.file == "data/public.content.jsonl"
    rows = [json.loads(line) for line in (tmp_path / "out" / table.file).read_text().splitlines()]
    with seeded.connect() as conn:
        published = values(conn, "SELECT count(*) FROM content WHERE state = 'published'")
    assert len(rows) == int(published[0]) == table.rows
    assert {row["state"] for row in rows} == {"published"}
    assert isinstance(rows[0]["id"], int) and isinstance(rows[0]["extra"], dict)
    assert "search_vector" not in rows[0]  # generated: the target computes it
    assert result.rows == sum(t.rows for t in bundle.tables)


def test_personal_data_of_one_user_follows_everything_pointing_at_them(
    seeded: Engine, tmp_path: Path
) -> None:
    with seeded.connect() as conn:
        user = conn.execute(
            sa.text("SELECT author_id FROM content GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()
        sessions = values(conn, "SELECT id FROM user_sessions WHERE user_id = :u", u=user)
        authored = values(conn, "SELECT id FROM content WHERE author_id = :u", u=user)
        comments = values(
            conn,
            "SELECT id FROM comments WHERE author_id = :u"
            " OR content_id IN (SELECT id FROM content WHERE author_id = :u)",
            u=user,
        )
    with seeded.connect() as conn:
        result = export_personal_data(
            conn, tmp_path / "me", user_table="public.users", user_id=str(user), format="jsonl"
        )
    bundle = read_bundle(tmp_path / "me", verify=True)

    def ids(name: str, column: str = "id") -> set[str]:
        lines = (tmp_path / "me" / bundle.table(name).file).read_text().splitlines()
        return {str(json.loads(line)[column]) for line in lines}

    report = {t.name: t for t in result.tables}
    assert report["public.users"].direct == 1
    assert ids("public.user_sessions") == set(sessions)  # only the user's own sessions
    assert ids("public.content") >= set(authored)  # and content they commented on or rated
    assert ids("public.comments") >= set(comments)  # theirs, and comments on their content
    assert "public.page_views" not in report  # no foreign key leads there


def test_a_bad_filter_fails_before_anything_is_written(seeded: Engine, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unexpected character ';' at position 10"):
        export(seeded, tmp_path / "out", tables=["public.users"], where=["email = x; --"])
    with pytest.raises(UserError, match="does not fit column 'created_at'"):
        export(seeded, tmp_path / "out", tables=["public.users"], where=["created_at > 'soon'"])
    with pytest.raises(UserError, match="no table"):
        export(seeded, tmp_path / "out", tables=["public.nope"])
    assert not (tmp_path / "out").exists()


# -- the bundle format: odd names, COPY text, tampering --------------------------------

ODD = r"""
CREATE SCHEMA "Sales & Co";
CREATE TABLE "Sales & Co"."Order ""Lines""/ü" (
    id int PRIMARY KEY, note text, data jsonb, amount numeric(12,4), at timestamptz,
    tags text[], raw bytea);
INSERT INTO "Sales & Co"."Order ""Lines""/ü" VALUES
    (1, E'tab\there\nnewline \\ backslash', '{"k": "v\n", "n": 1.50}', 12345678.1234,
     '2026-01-02 03:04:05.123456+02', '{a,"b c"}', '\x00ff'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, '', '[]', -0.0001, 'infinity', '{}', '');
"""


def test_odd_names_get_safe_files_and_every_value_comes_back(
    pg_engine: Engine, tmp_path: Path
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(ODD))
    name = 'Sales & Co.Order "Lines"/ü'
    with pg_engine.connect() as conn:
        rows_before = conn.execute(
            sa.text('SELECT t::text FROM "Sales & Co"."Order ""Lines""/ü" AS t ORDER BY id')
        ).all()
        conn.rollback()
        export_bundle(conn, tmp_path / "copy", tables=[name])
        export_bundle(conn, tmp_path / "json", tables=[name], format="jsonl")
    bundle = read_bundle(tmp_path / "copy", verify=True)
    (table,) = bundle.tables
    assert table.file == "data/Sales%20%26%20Co.Order%20%22Lines%22%2F%C3%BC.copy"
    assert (tmp_path / "copy" / table.file).is_file()
    with pg_engine.begin() as conn:
        conn.execute(sa.text('TRUNCATE "Sales & Co"."Order ""Lines""/ü"'))
    load_with_copy(pg_engine, bundle)
    with pg_engine.connect() as conn:
        rows_after = conn.execute(
            sa.text('SELECT t::text FROM "Sales & Co"."Order ""Lines""/ü" AS t ORDER BY id')
        ).all()
    assert rows_after == rows_before
    lines = (tmp_path / "json" / read_bundle(tmp_path / "json").tables[0].file).read_text()
    first = json.loads(lines.splitlines()[0], parse_float=Decimal)
    assert first["note"] == "tab\there\nnewline \\ backslash"
    assert first["data"] == {"k": "v\n", "n": Decimal("1.50")}
    assert first["amount"] == Decimal("12345678.1234")
    assert first["at"] == "2026-01-02 01:04:05.123456+00"  # as PostgreSQL prints it, in UTC
    assert first["tags"] == '{a,"b c"}' and first["raw"] == "\\x00ff"


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.none()
        | st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
        ),
        min_size=1,
        max_size=5,
    )
)
def test_copy_text_round_trips_any_values(values: list[str | None]) -> None:  # fmt: skip
    assert parse_copy_line(format_copy_row(values)) == values


def test_a_tampered_or_renamed_file_is_refused(seeded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(seeded, out, tables=["public.tags"])
    bundle = read_bundle(out, verify=True)
    path = out / bundle.tables[0].file
    path.write_bytes(path.read_bytes().replace(b"\t", b"\t!", 1))
    with pytest.raises(BundleError, match="does not match the manifest"):
        read_bundle(out, verify=True)
    with pytest.raises(BundleError, match="does not match"):
        list(read_bundle(out).iter_data(bundle.tables[0]))  # checked as it streams
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tables"][0]["file"] = "../../etc/passwd"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"names the file '\.\./\.\./etc/passwd'"):
        read_bundle(out)
    manifest["pgwarden_bundle"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 2"):
        read_bundle(out)
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        read_bundle(tmp_path)
    with pytest.raises(UserError, match="not an empty directory"):
        export(seeded, out, tables=["public.tags"])
