"""Importing bundles and CSV files into learnhub databases, checked through the data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pgwarden.errors import UserError
from pgwarden.transfer import (
    BundleError,
    ImportFailed,
    ImportReport,
    TransferProgress,
    TransformSpec,
    compile_transforms,
    import_bundle,
    import_csv,
    list_runs,
    read_bundle,
)
from transfer_import_support import checksums, connection, counts, run, scalar, write_bundle


def load(url: str, path: Path, **options: Any) -> ImportReport:
    with connection(url) as conn:
        return import_bundle(conn, path, **options)


def table(report: ImportReport, name: str) -> Any:
    return next(t for t in report.tables if t.table == name)


@pytest.mark.parametrize("format", ["copy", "jsonl"])
def test_a_bundle_loads_into_an_empty_database_row_for_row(
    seeded_url: str, learnhub_url: str, tmp_path: Path, format: str
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", format=format)  # type: ignore[arg-type]
    events: list[TransferProgress] = []
    report = load(learnhub_url, bundle, on_progress=events.append)
    assert report.ok and report.run_id is not None
    manifest = {t.qualified: t.rows for t in read_bundle(bundle).tables}
    assert {t.table: t.inserted for t in report.tables} == manifest
    assert {name: n for name, n in counts(learnhub_url).items() if name in manifest} == manifest
    # Same rows, same values: timestamps kept (no updated_at trigger), generated columns
    # computed again to the same, partitions filled.
    assert checksums(learnhub_url) == checksums(seeded_url)
    merged = [e for e in events if e.phase == "merge"]
    assert merged[-1].done == merged[-1].total == sum(manifest.values())
    assert {e.phase for e in events} == {"load", "merge"}
    # New rows get ids after the imported ones.
    run(learnhub_url, "INSERT INTO tags (name) VALUES ('after-import')")
    assert scalar(learnhub_url, "SELECT id FROM tags WHERE name = 'after-import'") > max(
        0, scalar(seeded_url, "SELECT max(id) FROM tags")
    )


def test_dry_run_reports_what_would_change_and_changes_nothing(
    seeded_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.users", "public.ratings"])
    run(
        seeded_url,
        "UPDATE users SET display_name = display_name || ' (edited)' WHERE id IN (1, 2, 3)",
        "DELETE FROM ratings WHERE id IN (SELECT id FROM ratings ORDER BY id LIMIT 4)",
    )
    before = checksums(seeded_url)
    report = load(seeded_url, bundle, mode="upsert", dry_run=True)
    assert report.ok and report.dry_run and report.run_id is None
    users, ratings = table(report, "public.users"), table(report, "public.ratings")
    assert (users.updated, users.inserted, users.unchanged) == (3, 0, users.rows - 3)
    assert (ratings.inserted, ratings.updated, ratings.unchanged) == (4, 0, ratings.rows - 4)
    assert checksums(seeded_url) == before
    with connection(seeded_url) as conn:
        assert list_runs(conn) == []


def test_upsert_updates_changed_rows_and_journals_their_previous_versions(
    seeded_url: str, tmp_path: Path
) -> None:
    original = checksums(seeded_url)
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.users"])
    run(seeded_url, "UPDATE users SET display_name = 'edited' WHERE id IN (1, 2)")
    edited = checksums(seeded_url)
    report = load(seeded_url, bundle, mode="upsert")
    assert table(report, "public.users").updated == 2
    after = checksums(seeded_url)
    assert after["public.users"] == original["public.users"]
    # The edit was audited; the import was not (user triggers are off during it).
    assert after["public.audit_log"] == edited["public.audit_log"] != original["public.audit_log"]
    with connection(seeded_url) as conn:
        journal = conn.execute(
            sa.text(
                "SELECT action, key, previous->>'display_name' AS name"
                " FROM pgwarden.import_journal WHERE run_id = :id ORDER BY key->>'id'"
            ),
            {"id": report.run_id},
        ).all()
        runs = list_runs(conn)
    assert [(r.action, r.key, r.name) for r in journal] == [
        ("update", {"id": 1}, "edited"),
        ("update", {"id": 2}, "edited"),
    ]
    assert runs[0].id == report.run_id and runs[0].status == "committed"
    assert runs[0].tables["public.users"]["updated"] == 2


def test_insert_conflicts_are_listed_in_a_dry_run_and_fail_a_real_run(
    seeded_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"])
    run(seeded_url, "DELETE FROM tags WHERE id IN (1, 2)")
    before = checksums(seeded_url)
    report = load(seeded_url, bundle, dry_run=True)
    tags = table(report, "public.tags")
    assert not report.ok and (tags.inserted, tags.conflicts) == (2, tags.rows - 2)
    assert tags.conflict_keys[0] == {"id": "3"}  # keys as the file holds them
    assert checksums(seeded_url) == before
    with pytest.raises(ImportFailed) as failed:
        load(seeded_url, bundle)
    assert table(failed.value.report, "public.tags").conflicts == tags.rows - 2
    assert checksums(seeded_url) == before


def test_a_foreign_key_violation_names_the_offending_rows(seeded_url: str, tmp_path: Path) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.ratings"])
    with connection(seeded_url) as conn:
        contents = (
            conn.execute(
                sa.text(
                    "SELECT content_id FROM ratings GROUP BY content_id"
                    " HAVING count(*) <= 3 ORDER BY content_id LIMIT 2"
                )
            )
            .scalars()
            .all()
        )
        offending = (
            conn.execute(
                sa.text("SELECT id FROM ratings WHERE content_id = ANY(:c) ORDER BY id"),
                {"c": list(contents)},
            )
            .scalars()
            .all()
        )
    run(
        seeded_url,
        "DELETE FROM ratings",
        "UPDATE comments SET parent_id = NULL",  # replies may cross content
        "DELETE FROM content WHERE id = ANY(:c)",
        c=contents,
    )
    before = checksums(seeded_url)
    report = load(seeded_url, bundle, dry_run=True, batch_size=64)
    ratings = table(report, "public.ratings")
    assert [int(e.key["id"]) for e in ratings.errors] == offending
    assert {e.constraint for e in ratings.errors} == {"fk_ratings_content_id_content"}
    assert "is not present in table" in (ratings.errors[0].detail or "")
    assert ratings.failed == len(offending)
    assert ratings.inserted == ratings.rows - len(offending)
    assert checksums(seeded_url) == before
    with pytest.raises(ImportFailed) as failed:
        load(seeded_url, bundle)
    assert table(failed.value.report, "public.ratings").errors[0].row is not None
    assert scalar(seeded_url, "SELECT count(*) FROM ratings") == 0


def test_replace_deletes_rows_the_bundle_lacks_unless_that_would_cascade(
    seeded_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"])
    original = checksums(seeded_url)["public.tags"]
    run(
        seeded_url,
        "INSERT INTO tags (id, name) VALUES (900, 'extra'), (901, 'tagged')",
        "UPDATE tags SET name = 'renamed' WHERE id = 1",
        "INSERT INTO content_tags (content_id, tag_id) SELECT min(id), 901 FROM content",
    )
    before = checksums(seeded_url)
    report = load(seeded_url, bundle, mode="replace", dry_run=True)
    assert "ON DELETE CASCADE" in table(report, "public.tags").errors[0].error
    with pytest.raises(ImportFailed):
        load(seeded_url, bundle, mode="replace")
    assert checksums(seeded_url) == before
    run(seeded_url, "DELETE FROM content_tags WHERE tag_id = 901")
    report = load(seeded_url, bundle, mode="replace")
    tags = table(report, "public.tags")
    assert (tags.deleted, tags.updated, tags.inserted) == (2, 1, 0)
    assert checksums(seeded_url)["public.tags"] == original


def test_a_schema_difference_is_listed_before_anything_is_written(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.tags"])
    run(learnhub_url, "ALTER TABLE tags ADD COLUMN note text")
    with pytest.raises(UserError, match="column note is only in the target") as drift:
        load(learnhub_url, bundle)
    assert "--allow-schema-drift" in (drift.value.hint or "")
    report = load(learnhub_url, bundle, allow_schema_drift=True)
    assert report.ok and any("note" in warning for warning in report.warnings)
    run(learnhub_url, "ALTER TABLE tags ALTER COLUMN name TYPE text")
    with pytest.raises(UserError, match=r"name is character varying\(60\) in the bundle, text"):
        load(learnhub_url, bundle, allow_schema_drift=True, mode="upsert")


def test_an_unknown_table_or_a_tampered_file_stops_before_any_write(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    run(seeded_url, "CREATE TABLE extra (id int PRIMARY KEY)", "INSERT INTO extra VALUES (1)")
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.extra"])
    with pytest.raises(UserError, match=r"the target has no table public\.extra"):
        load(learnhub_url, bundle)
    bundle = write_bundle(seeded_url, tmp_path / "c", tables=["public.tags", "public.roles"])
    data = bundle / read_bundle(bundle).table("public.tags").file
    data.write_bytes(data.read_bytes().replace(b"\t", b"\tX", 1)[:-1])  # same size, new text
    before = checksums(learnhub_url)
    with pytest.raises(BundleError, match="does not match the manifest"):
        load(learnhub_url, bundle)
    assert checksums(learnhub_url) == before
    assert scalar(learnhub_url, "SELECT to_regclass('pgwarden.import_run')") is None


def test_a_csv_file_upserts_into_one_table(seeded_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "tags.csv"
    csv.write_text(
        'id,name\n1,"renamed, with a comma"\n999,brand new\n2,'
        + (scalar(seeded_url, "SELECT name FROM tags WHERE id = 2") + "\n")
    )
    with connection(seeded_url) as conn:
        report = import_csv(conn, "tags", csv, mode="upsert")
    tags = report.tables[0]
    assert (tags.rows, tags.inserted, tags.updated, tags.unchanged) == (3, 1, 1, 1)
    assert report.source["sha256"] and report.run_id is not None
    assert scalar(seeded_url, "SELECT name FROM tags WHERE id = 1") == "renamed, with a comma"
    csv.write_text("id,colour\n1,red\n")
    with connection(seeded_url) as conn, pytest.raises(UserError, match="colour"):
        import_csv(conn, "tags", csv)


def test_transforms_rewrite_rows_on_their_way_in(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(
        seeded_url, tmp_path / "b", tables=["public.organizations", "public.users"]
    )
    rules = {"display_name": {"kind": "constant", "value": "Someone"}, "email": "fake_email"}
    spec = TransformSpec.from_mapping({"tables": {"users": rules}}, salt=b"x")
    report = load(learnhub_url, bundle, transforms=spec)
    assert report.ok
    names = scalar(learnhub_url, "SELECT array_agg(DISTINCT display_name) FROM users")
    assert names == ["Someone"]
    assert scalar(learnhub_url, "SELECT count(*) FROM users") == table(report, "public.users").rows
    # a column at a time on the way in gives what one row at a time gives
    one_by_one = compile_transforms(spec, read_bundle(bundle).table("public.users"))
    query = "SELECT id::text, email FROM users ORDER BY id"
    with connection(seeded_url) as source, connection(learnhub_url) as target:
        before, after = source.execute(sa.text(query)).all(), target.execute(sa.text(query)).all()
    assert [id for id, _ in after] == [id for id, _ in before]
    assert [email for _, email in after] == [
        one_by_one({"id": id, "email": email})["email"] for id, email in before
    ]


def test_an_exported_bundle_imports_into_an_empty_database(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    from pgwarden.transfer.export.bundles import export_bundle

    with connection(seeded_url) as conn:
        exported = export_bundle(conn, tmp_path / "export")
    manifest = {t.qualified: t.rows for t in exported.bundle.tables}
    # The target was migrated, so its alembic_version row is there already: upsert.
    report = load(learnhub_url, tmp_path / "export", mode="upsert")
    assert report.ok, report
    assert {n: c for n, c in counts(learnhub_url).items() if n in manifest} == manifest
    assert {t.table: t.rows for t in report.tables} == manifest
    source = checksums(seeded_url)
    assert {n: c for n, c in checksums(learnhub_url).items() if n in manifest} == {
        n: source[n] for n in manifest
    }


def test_rows_before_their_parents_in_a_self_referencing_table_are_not_blamed(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    tree = "CREATE TABLE tree (id int PRIMARY KEY, parent_id int REFERENCES tree, size int)"
    run(seeded_url, tree, "ALTER TABLE tree ADD CHECK (size >= 0)")
    run(learnhub_url, tree, "ALTER TABLE tree ADD CHECK (size > 0)")  # stricter: 0 is refused
    run(
        seeded_url,
        "INSERT INTO tree SELECT n, nullif(n - 1, 0), CASE WHEN n = 13 THEN 0 ELSE n END"
        " FROM generate_series(1, 40) AS n",
    )
    # Children first: a split batch parts many rows from their parents.
    bundle = write_bundle(
        seeded_url, tmp_path / "b", tables=["public.tree"], order_by={"public.tree": "id DESC"}
    )
    report = load(learnhub_url, bundle, dry_run=True, max_errors=3)
    tree_report = table(report, "public.tree")
    # Row 13 breaks the check; rows 14..40 hang below it and cannot go in without it.
    # Parents are merged first whatever the file order, so the first refusal is row 13
    # itself (line 28 of the file), not a child parted from its parent.
    assert tree_report.inserted == 12 and tree_report.failed == 28
    first = tree_report.errors[0]
    assert (first.row, first.key, first.constraint) == (28, {"id": "13"}, "tree_size_check")
    assert {e.constraint for e in tree_report.errors[1:]} == {"tree_parent_id_fkey"}


def test_a_malformed_file_is_a_bundle_error(seeded_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "tags.csv"
    csv.write_text('id,name\n1,"unterminated\n')
    with connection(seeded_url) as conn, pytest.raises(BundleError, match="cannot be loaded"):
        import_csv(conn, "tags", csv)


def test_an_insert_into_an_empty_table_is_copied_in_and_journaled_in_one_row(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    ddl = "CREATE TABLE notes (id int PRIMARY KEY, body text, at timestamptz)"
    run(
        seeded_url,
        ddl,
        "INSERT INTO notes SELECT g, 'note ' || g, now() FROM generate_series(1, 30) g",
    )
    run(learnhub_url, ddl)
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.notes"])
    report = load(learnhub_url, bundle, batch_size=7)
    assert table(report, "public.notes").inserted == 30
    assert checksums(learnhub_url)["public.notes"] == checksums(seeded_url)["public.notes"]
    with connection(learnhub_url) as conn:
        journal = conn.execute(
            sa.text(
                "SELECT action, key, keys, written_xmin::text AS xmin"
                " FROM pgwarden.import_journal WHERE run_id = :id"
            ),
            {"id": report.run_id},
        ).all()
    assert len(journal) == 1
    assert journal[0].action == "insert" and journal[0].key is None
    assert journal[0].keys == {"id": "{" + ",".join(str(i) for i in range(1, 31)) + "}"}
    assert journal[0].xmin is not None


def test_a_bad_row_copied_into_an_empty_table_is_found_through_staging(
    learnhub_url: str, tmp_path: Path
) -> None:
    run(learnhub_url, "CREATE TABLE notes (id int PRIMARY KEY, n int NOT NULL)")
    file = tmp_path / "notes.csv"
    file.write_bytes(b"id,n\n1,10\n2,\n3,30\n")
    report = None
    with connection(learnhub_url) as conn:
        report = import_csv(conn, "notes", file, dry_run=True)
    notes = table(report, "public.notes")
    assert (notes.rows, notes.inserted, notes.failed) == (3, 2, 1)
    assert [e.key for e in notes.errors] == [{"id": "2"}]
    assert report.source["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert scalar(learnhub_url, "SELECT count(*) FROM notes") == 0
