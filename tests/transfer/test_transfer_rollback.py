"""Rolling imports back: the exact prior state, or a refusal listing the rows, changing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgwarden.errors import UserError
from pgwarden.transfer import (
    ImportReport,
    RollbackRefused,
    RollbackReport,
    get_run,
    import_bundle,
    rollback_run,
)
from transfer_import_support import checksums, connection, engine, run, scalar, write_bundle


def load(url: str, path: Path, **options: Any) -> ImportReport:
    with connection(url) as conn:
        return import_bundle(conn, path, **options)


def undo(url: str, run_id: int, **options: Any) -> RollbackReport:
    with connection(url) as conn:
        return rollback_run(conn, run_id, **options)


def test_import_then_rollback_leaves_every_table_as_before(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b")
    before = checksums(learnhub_url)
    report = load(learnhub_url, bundle)
    assert report.run_id is not None and checksums(learnhub_url) != before
    done = undo(learnhub_url, report.run_id)
    assert checksums(learnhub_url) == before
    assert sum(t.deleted for t in done.tables) == report.totals["inserted"]
    with connection(learnhub_url) as conn:
        assert get_run(conn, report.run_id).status == "rolled_back"
    with pytest.raises(UserError, match="rolled back already"):
        undo(learnhub_url, report.run_id)


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_rollback_restores_updated_and_deleted_rows_exactly(
    seeded_url: str, tmp_path: Path, mode: str
) -> None:
    tables = ["public.users", "public.tags", "public.ratings"]
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=tables)
    run(
        seeded_url,
        "UPDATE users SET display_name = 'edited', last_login_at = now() WHERE id IN (1, 2)",
        "INSERT INTO tags (name) VALUES ('not in the bundle')",
        "DELETE FROM ratings WHERE id IN (SELECT id FROM ratings ORDER BY id LIMIT 3)",
    )
    before = checksums(seeded_url)
    report = load(seeded_url, bundle, mode=mode)
    assert report.run_id is not None and checksums(seeded_url) != before
    tags = next(t for t in report.tables if t.table == "public.tags")
    assert tags.deleted == (1 if mode == "replace" else 0)
    done = undo(seeded_url, report.run_id)
    assert checksums(seeded_url) == before
    restored = {t.table: (t.restored, t.reinserted, t.deleted) for t in done.tables}
    assert restored["public.users"] == (2, 0, 0)
    assert restored["public.ratings"] == (0, 0, 3)
    assert restored.get("public.tags") == ((0, 1, 0) if mode == "replace" else None)


def test_rollback_refuses_rows_changed_after_the_import_and_changes_nothing(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(
        seeded_url, tmp_path / "b", tables=["public.organizations", "public.tags"]
    )
    report = load(learnhub_url, bundle)
    assert report.run_id is not None
    tag, gone = scalar(learnhub_url, "SELECT array_agg(id ORDER BY id) FROM tags")[:2]
    run(
        learnhub_url,
        "UPDATE tags SET name = 'changed later' WHERE id = :tag",
        "DELETE FROM tags WHERE id = :gone",
        tag=tag,
        gone=gone,
    )
    after = checksums(learnhub_url)
    with pytest.raises(RollbackRefused) as refused:
        undo(learnhub_url, report.run_id)
    assert refused.value.total == 2
    assert {(c.table, c.key["id"], c.why) for c in refused.value.changed} == {
        ("public.tags", tag, "changed"),
        ("public.tags", gone, "deleted"),
    }
    assert checksums(learnhub_url) == after
    with connection(learnhub_url) as conn:
        assert get_run(conn, report.run_id).status == "committed"


def test_rollback_refuses_when_new_rows_reference_imported_ones(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.roles", "public.permissions"])
    report = load(learnhub_url, bundle)
    assert report.run_id is not None
    run(
        learnhub_url,
        "INSERT INTO role_permissions (role_id, permission_id)"
        " SELECT min(r.id), min(p.id) FROM roles r, permissions p",
    )
    with pytest.raises(RollbackRefused) as refused:
        undo(learnhub_url, report.run_id)
    assert {(c.table, c.why) for c in refused.value.changed} == {
        ("public.role_permissions", "referenced")
    }
    assert refused.value.total == 2  # the row points at an imported role and permission


def test_rollback_dry_run_reports_and_changes_nothing(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = write_bundle(seeded_url, tmp_path / "b", tables=["public.organizations"])
    report = load(learnhub_url, bundle)
    assert report.run_id is not None
    after = checksums(learnhub_url)
    done = undo(learnhub_url, report.run_id, dry_run=True)
    assert done.dry_run and done.tables[0].deleted == report.tables[0].inserted > 0
    assert checksums(learnhub_url) == after
    with connection(learnhub_url) as conn:
        assert get_run(conn, report.run_id).status == "committed"
    undo(learnhub_url, report.run_id)
    assert scalar(learnhub_url, "SELECT count(*) FROM organizations") == 0


def _notes(seeded_url: str, learnhub_url: str, tmp_path: Path, rows: int = 50) -> Path:
    """Create ``notes`` in both databases, ``rows`` of them in the source; bundle them."""
    ddl = "CREATE TABLE notes (id int PRIMARY KEY, body text, at timestamptz)"
    run(
        seeded_url,
        ddl,
        "INSERT INTO notes SELECT g, 'note ' || g, now() FROM generate_series(1, :n) g",
        n=rows,
    )
    run(learnhub_url, ddl)
    return write_bundle(seeded_url, tmp_path / "b", tables=["public.notes"])


def _autocommit(url: str, *statements: str) -> None:
    eng = engine(url)
    try:
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        eng.dispose()


def test_rollback_survives_freezing_and_table_rewrites(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = _notes(seeded_url, learnhub_url, tmp_path)
    before = checksums(learnhub_url)
    report = load(learnhub_url, bundle, batch_size=20)
    assert report.run_id is not None
    _autocommit(
        learnhub_url, "VACUUM (FREEZE) notes", "VACUUM FULL notes", "CLUSTER notes USING notes_pkey"
    )
    done = undo(learnhub_url, report.run_id)
    assert done.tables[0].deleted == 50
    assert checksums(learnhub_url) == before


def test_rows_copied_back_are_refused_as_if_restored_from_a_dump(
    seeded_url: str, learnhub_url: str, tmp_path: Path
) -> None:
    bundle = _notes(seeded_url, learnhub_url, tmp_path)
    report = load(learnhub_url, bundle)
    assert report.run_id is not None
    # What a dump and restore does to the rows: the same values, written anew.
    run(
        learnhub_url,
        "CREATE TEMPORARY TABLE saved AS SELECT * FROM notes",
        "DELETE FROM notes",
        "INSERT INTO notes SELECT * FROM saved",
    )
    with pytest.raises(RollbackRefused, match="restored from a dump") as refused:
        undo(learnhub_url, report.run_id)
    assert refused.value.total == 50
    assert {c.why for c in refused.value.changed} == {"changed"}


def test_runs_journaled_by_row_hashes_still_roll_back(learnhub_url: str) -> None:
    """A journal of an older version (a key and an md5 per row) is upgraded and honoured."""
    run(
        learnhub_url,
        "CREATE SCHEMA pgwarden",
        "CREATE TABLE pgwarden.import_run (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " kind text NOT NULL CHECK (kind IN ('import', 'erase')), mode text NOT NULL,"
        " status text NOT NULL CHECK (status IN ('running', 'committed', 'rolled_back',"
        " 'purged')), started_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
        " finished_at timestamptz, rolled_back_at timestamptz,"
        " database_user name NOT NULL DEFAULT current_user,"
        " source jsonb NOT NULL DEFAULT '{}', manifest_sha256 text,"
        " tables jsonb NOT NULL DEFAULT '{}')",
        "CREATE TABLE pgwarden.import_journal (run_id bigint NOT NULL,"
        " schema_name text NOT NULL, table_name text NOT NULL,"
        " action text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),"
        " key jsonb NOT NULL, previous jsonb, new_hash text,"
        " CHECK ((action = 'insert') = (previous IS NULL)),"
        " CHECK ((action = 'delete') = (new_hash IS NULL)))",
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 3) g",
        "INSERT INTO pgwarden.import_run (kind, mode, status) VALUES ('import', 'insert',"
        " 'committed')",
        "INSERT INTO pgwarden.import_journal SELECT 1, 'public', 'notes', 'insert',"
        " jsonb_build_object('id', n.id), NULL, md5(ROW(n.*)::text) FROM notes AS n",
    )
    run(learnhub_url, "UPDATE notes SET body = 'changed' WHERE id = 3")
    with pytest.raises(RollbackRefused) as refused:
        undo(learnhub_url, 1)
    assert [(c.key, c.why) for c in refused.value.changed] == [({"id": 3}, "changed")]
    run(learnhub_url, "UPDATE notes SET body = 'note 3' WHERE id = 3")  # as the run left it
    assert undo(learnhub_url, 1).tables[0].deleted == 3
    assert scalar(learnhub_url, "SELECT count(*) FROM notes") == 0
