"""Erasing one user's data from a seeded learnhub database, and rolling an erase back."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pgwarden.errors import UserError
from pgwarden.transfer import EraseReport, erase_user, get_run, rollback_run
from transfer_import_support import checksums, connection, run, scalar

# A user who edited versions of other people's content: erasing them deletes their own
# rows and unlinks those versions.
EDITOR = """
SELECT v.editor_id
FROM content_versions v
JOIN content c ON c.id = v.content_id
WHERE v.editor_id <> c.author_id
GROUP BY v.editor_id
ORDER BY count(*) DESC, v.editor_id
LIMIT 1
"""


def erase(url: str, user: int, **options: Any) -> EraseReport:
    with connection(url) as conn:
        return erase_user(conn, "public.users", user, **options)


def counts(report: EraseReport) -> dict[str, tuple[int, int, int]]:
    return {t.table: (t.deleted, t.nullified, t.anonymized) for t in report.tables}


def linked(url: str, user: int) -> dict[str, int]:
    """Return how many rows of each table point at the user."""
    queries = {
        "users": "SELECT count(*) FROM users WHERE id = :u",
        "profiles": "SELECT count(*) FROM profiles WHERE user_id = :u",
        "content": "SELECT count(*) FROM content WHERE author_id = :u",
        "comments": "SELECT count(*) FROM comments WHERE author_id = :u",
        "ratings": "SELECT count(*) FROM ratings WHERE user_id = :u",
        "sessions": "SELECT count(*) FROM user_sessions WHERE user_id = :u",
        "versions": "SELECT count(*) FROM content_versions WHERE editor_id = :u",
        "transitions": "SELECT count(*) FROM workflow_transitions WHERE actor_id = :u",
    }
    return {name: scalar(url, query, u=user) for name, query in queries.items()}


def test_dry_run_counts_the_rows_and_changes_nothing(seeded_url: str) -> None:
    user = scalar(seeded_url, EDITOR)
    before = checksums(seeded_url)
    rehearsed = erase(seeded_url, user, dry_run=True)
    assert rehearsed.dry_run and rehearsed.run_id is None
    assert counts(rehearsed)["public.users"] == (1, 0, 0)
    assert counts(rehearsed)["public.content_versions"][1] > 0  # unlinked, kept
    assert checksums(seeded_url) == before
    done = erase(seeded_url, user)
    assert counts(done) == counts(rehearsed)


def test_erase_deletes_what_the_user_owns_and_unlinks_the_rest(seeded_url: str) -> None:
    user = scalar(seeded_url, EDITOR)
    assert linked(seeded_url, user)["versions"] > 0
    kept_versions = scalar(
        seeded_url,
        "SELECT count(*) FROM content_versions v JOIN content c ON c.id = v.content_id"
        " WHERE v.editor_id = :u AND c.author_id <> :u",
        u=user,
    )
    before = checksums(seeded_url)
    audit = scalar(seeded_url, "SELECT count(*) FROM audit_log")
    report = erase(seeded_url, user)
    assert report.run_id is not None
    assert set(linked(seeded_url, user).values()) == {0}
    assert counts(report)["public.content_versions"][1] == kept_versions
    # The audit trigger was off: no copy of the erased rows in the audit log.
    assert scalar(seeded_url, "SELECT count(*) FROM audit_log") == audit
    rollback_run_of(seeded_url, report.run_id)
    assert checksums(seeded_url) == before


def rollback_run_of(url: str, run_id: int) -> None:
    with connection(url) as conn:
        rollback_run(conn, run_id)


def test_anonymize_keeps_the_rows_and_replaces_personal_values(seeded_url: str) -> None:
    user = scalar(seeded_url, EDITOR)
    rows = linked(seeded_url, user)
    before = checksums(seeded_url)
    report = erase(seeded_url, user, anonymize=True, salt="pepper")
    assert linked(seeded_url, user) == rows
    email = hashlib.md5(
        f'pepper/users/email/{{"id": {user}}}'.encode(), usedforsecurity=False
    ).hexdigest()[:16]
    assert scalar(seeded_url, "SELECT email FROM users WHERE id = :u", u=user) == (
        f"anon-{email}@example.invalid"
    )
    assert scalar(seeded_url, "SELECT display_name FROM users WHERE id = :u", u=user).startswith(
        "anon-"
    )
    assert scalar(seeded_url, "SELECT phone FROM profiles WHERE user_id = :u", u=user) is None
    assert counts(report)["public.users"] == (0, 0, 1)
    assert report.run_id is not None
    rollback_run_of(seeded_url, report.run_id)
    assert checksums(seeded_url) == before


def test_also_follows_a_column_without_a_foreign_key(seeded_url: str) -> None:
    user = scalar(seeded_url, "SELECT user_id FROM events WHERE user_id IS NOT NULL LIMIT 1")
    events = scalar(seeded_url, "SELECT count(*) FROM events WHERE user_id = :u", u=user)
    report = erase(seeded_url, user, also=["public.events.user_id"], purge_journal=True)
    assert counts(report)["public.events"] == (events, 0, 0)
    assert scalar(seeded_url, "SELECT count(*) FROM events WHERE user_id = :u", u=user) == 0
    assert report.journal_purged and report.run_id is not None
    with connection(seeded_url) as conn:
        run_ = get_run(conn, report.run_id)
    assert run_.status == "purged" and run_.journal_rows == 0


def test_an_unknown_user_or_table_is_a_user_error(seeded_url: str) -> None:
    with pytest.raises(UserError, match="no row with id = 999999"):
        erase(seeded_url, 999999)
    with connection(seeded_url) as conn, pytest.raises(UserError, match="no table"):
        erase_user(conn, "public.nobody", 1)
    run(seeded_url, "SELECT 1")
