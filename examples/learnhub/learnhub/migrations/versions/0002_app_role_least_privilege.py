"""The API's own login role, with only the grants it needs; public content.

The API connects as ``learnhub_app`` (``LEARNHUB_APP_ROLE``), never as the owner that
runs these migrations: a role that is not a superuser, has no ``BYPASSRLS`` and owns no
table, so row-level security applies to everything it sends. Its password is
``LEARNHUB_APP_PASSWORD``, or the one learnhub keeps in a 0600 file (see
``learnhub.app_role``); only its SCRAM verifier, computed here, reaches the server.

Grants are by table and by need, so a table a later migration adds is out of the API's
reach until that migration grants it:

- read: organizations, categories, tags, content_tags, profiles, comments, and users
  without ``password_hash``;
- read and write: content (no DELETE: deletion is soft), user_sessions (sign-in);
- write only: audit_log, which the audit trigger fills as the API's role.

Row-level security: content is readable by its organisation, or by anyone when its
``visibility`` is ``public``, and changed only by its organisation; comments follow the
content they are on.

Revision: 0002, after 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from learnhub.app_role import app_password, role_name
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

READ = ["organizations", "categories", "tags", "content_tags", "profiles", "comments"]
USER_COLUMNS = [
    "id", "org_id", "email", "display_name", "is_active", "email_verified_at",
    "last_login_at", "created_at", "updated_at", "deleted_at",
]  # fmt: skip
VISIBILITY = postgresql.ENUM("organization", "public", name="content_visibility", create_type=False)
TENANT = "NULLIF(current_setting('pgwarden.tenant_id', true), '')::bigint"


def _login(role: str) -> None:
    """Make ``role`` able to log in, with its password.

    Only LOGIN is asked for: a role 0001 created is already NOSUPERUSER NOBYPASSRLS, and
    changing those takes a superuser, which the migrating role need not be. pgwarden's
    doctor (check rls_bypassed) tells if the role has been given either since.
    """
    op.execute(f"ALTER ROLE {role} LOGIN")
    if context.is_offline_mode():
        return  # offline (--sql): set the password apart, with ALTER ROLE ... PASSWORD
    password = context.config.attributes.get("app_password") or app_password(create=True)
    if password is None:
        return
    bind = op.get_bind()
    raw = bind.connection.driver_connection
    # Sent as its SCRAM verifier: what a server log or pg_stat_statements may record of
    # this statement is not the password.
    verifier = raw.pgconn.encrypt_password(  # type: ignore[union-attr]
        password.encode(), role.encode(), b"scram-sha-256"
    ).decode()
    bind.exec_driver_sql(f"ALTER ROLE {role} PASSWORD '{verifier}'")


def upgrade() -> None:
    # The ALTER TABLEs below wait for no running transaction longer than this: a lock
    # timeout fails the migration (to be run again) instead of queueing every query on
    # content and comments behind it.
    op.execute("SET LOCAL lock_timeout = '5s'")
    role = role_name()
    _login(role)
    VISIBILITY.create(op.get_bind(), checkfirst=True)
    op.add_column(
        "content",
        sa.Column("visibility", VISIBILITY, server_default="organization", nullable=False),
    )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT SELECT ON {', '.join(READ)} TO {role}")
    op.execute(f"GRANT SELECT ({', '.join(USER_COLUMNS)}) ON users TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON content TO {role}")
    op.execute(f"GRANT SELECT, INSERT ON user_sessions TO {role}")
    op.execute(f"GRANT INSERT ON audit_log TO {role}")
    # Permissive policies add up: 0001's tenant_isolation (its organisation, any command)
    # or this one (public content, reading only).
    op.execute("CREATE POLICY public_read ON content FOR SELECT USING (visibility = 'public')")
    # A comment is visible when its content is: the subquery runs under content's policies.
    # pgwarden: ignore several-access-exclusive-locks -- content's new column (a constant
    # default) and this switch change the catalog only: both locks last milliseconds, and
    # lock_timeout bounds the wait for them.
    op.execute("ALTER TABLE comments ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY content_visible ON comments"
        " USING (EXISTS (SELECT FROM content WHERE content.id = comments.content_id))"
        f" WITH CHECK (EXISTS (SELECT FROM content WHERE content.id = comments.content_id"
        f" AND content.org_id = {TENANT}))"
    )


def downgrade() -> None:
    role = role_name()
    op.execute("DROP POLICY IF EXISTS content_visible ON comments")
    op.execute("ALTER TABLE comments DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS public_read ON content")
    op.drop_column("content", "visibility")
    op.execute("DROP TYPE IF EXISTS content_visibility")
    # 0001's grants. The role stays a login role: other databases may use it.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    # 0001 granted before it made page_views' partitions: they had none.
    op.execute(
        "DO $$ DECLARE part regclass; BEGIN"
        " FOR part IN SELECT c.oid FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relispartition AND c.relkind = 'r'"
        " LOOP EXECUTE 'REVOKE ALL ON ' || part::text || ' FROM '"
        f" || quote_ident('{role}'); END LOOP; END $$"
    )
