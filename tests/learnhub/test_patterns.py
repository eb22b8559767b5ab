"""The ORM patterns as learnhub's migration sets them up: audit on users and content, and
row-level security on content for the application's role."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from learnhub.app_role import role_name

from pgwarden.db.engines import create_engine
from pgwarden.orm import set_actor, set_tenant


def test_user_changes_are_audited_with_the_actor(learnhub_url: str) -> None:
    engine = create_engine(learnhub_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        set_actor(conn, "admin@learnhub")
        conn.execute(sa.text("INSERT INTO organizations (id, name, slug) VALUES (1, 'o', 'o')"))
        conn.execute(
            sa.text(
                "INSERT INTO users (id, org_id, email, display_name, password_hash)"
                " VALUES (10, 1, 'x@example.org', 'X', 'h')"
            )
        )
    with engine.begin() as conn:
        set_actor(conn, "support@learnhub")
        conn.execute(sa.text("UPDATE users SET display_name = 'Y' WHERE id = 10"))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT action, actor, old_values ->> 'display_name' AS old_name,"
                " new_values ->> 'display_name' AS new_name"
                " FROM audit_log WHERE table_name = 'users' ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("INSERT", "admin@learnhub", None, "X"),
        ("UPDATE", "support@learnhub", "X", "Y"),
    ]


def test_the_app_role_sees_and_writes_only_its_organisation(seeded_url: str) -> None:
    app_role = role_name()
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        visible = sa.text(
            "SELECT org_id, count(*) FROM content"
            " WHERE org_id = :org OR visibility = 'public' GROUP BY org_id"
        )
        expected = dict(conn.execute(visible, {"org": 1}).all())
        public = dict(conn.execute(visible, {"org": None}).all())
        assert len(expected) > 1 and expected != public
        conn.rollback()
        with conn.begin():
            conn.execute(sa.text(f"SET LOCAL ROLE {app_role}"))
            set_tenant(conn, 1)
            crafted = conn.execute(
                sa.text("SELECT org_id, count(*) FROM content WHERE org_id = 2 OR 1 = 1 GROUP BY 1")
            ).all()
            assert dict(crafted) == expected  # organisation 1's, and others' public content
        with conn.begin():
            conn.execute(sa.text(f"SET LOCAL ROLE {app_role}"))
            no_tenant = conn.execute(sa.text("SELECT org_id, count(*) FROM content GROUP BY 1"))
            assert dict(no_tenant.all()) == public
        sneaky = sa.text(
            "INSERT INTO content (org_id, author_id, title, slug) VALUES (2, 1, 'sneaky', 'sneaky')"
        )
        with conn.begin():
            conn.execute(sa.text(f"SET LOCAL ROLE {app_role}"))
            set_tenant(conn, 1)
            with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
                conn.execute(sneaky)
            conn.rollback()
        with conn.begin():
            conn.execute(sa.text(f"SET LOCAL ROLE {app_role}"))
            set_tenant(conn, 1)
            moved = conn.execute(sa.text("UPDATE content SET title = 'x' WHERE org_id = 2"))
            assert moved.rowcount == 0  # other tenants' rows, public or not, cannot be updated
    engine.dispose()
