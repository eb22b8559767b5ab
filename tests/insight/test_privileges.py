"""The rls_bypassed check: row-level security that the application's role escapes."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden._sql import quote_identifier
from pgwarden.insight import check_privileges, doctor, parse_thresholds, role_access
from pgwarden.testing.servers import TestServer
from pgwarden_test_support import drop_role

Run = Callable[..., None]
NewRole = Callable[..., str]

TENANT_POLICY = (
    "CREATE POLICY tenant ON {table} USING (org_id = current_setting('app.org', true)::int)"
)


@pytest.fixture
def new_role(pg_server: TestServer, pg_engine: Engine) -> Iterator[NewRole]:
    """Return a function creating a role (name prefix, attributes), dropped after the test."""
    made: list[str] = []

    def create(prefix: str = "app", attributes: str = "NOLOGIN") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        quoted = quote_identifier(name)
        try:
            with pg_engine.begin() as conn:
                conn.execute(sa.text(f"CREATE ROLE {quoted} {attributes}"))
        except sa.exc.ProgrammingError as exc:
            pytest.skip(f"the test server's role cannot create such a role: {exc.orig}")
        made.append(quoted)
        return name

    yield create
    for quoted in made:
        drop_role(pg_engine, pg_server.admin, quoted)


def _tenant_table(run: Run, table: str = "note", *, force: bool = False) -> None:
    run(
        f"CREATE TABLE {table} (id int PRIMARY KEY, org_id int NOT NULL)",
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        TENANT_POLICY.format(table=table),
        *([f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"] if force else []),
    )


def test_a_superuser_connection_bypasses_every_policy(run: Run, pg_engine: Engine) -> None:
    _tenant_table(run, force=True)  # FORCE does not stop a superuser
    run("CREATE TABLE plain (id int)")
    with pg_engine.connect() as conn:
        superuser = conn.execute(
            sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        if not superuser.scalar_one():
            pytest.skip("the test server's role is not a superuser")
        result = check_privileges(conn)
    [finding] = result.findings
    assert finding.check == "rls_bypassed"
    assert finding.severity == "warning"
    assert finding.subject == "public.note"
    assert finding.details["reason"] == "superuser"
    assert "superuser" in finding.why
    assert (
        finding.fix is not None
        and "GRANT SELECT, INSERT, UPDATE, DELETE ON public.note" in finding.fix
    )


def test_no_table_with_row_level_security_is_quiet_even_for_a_superuser(
    run: Run, pg_engine: Engine
) -> None:
    run("CREATE TABLE plain (id int)")
    with pg_engine.connect() as conn:
        assert check_privileges(conn).findings == []


def test_an_owner_bypasses_unless_the_table_forces_it(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    owner = new_role("owner")
    _tenant_table(run, "open_note")
    _tenant_table(run, "forced_note", force=True)
    run(
        f"ALTER TABLE open_note OWNER TO {owner}",
        f"ALTER TABLE forced_note OWNER TO {owner}",
    )
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {owner}"))
        access = role_access(conn)
        result = check_privileges(conn)
    assert access.role == owner and not access.superuser and access.owned_tables == 2
    [finding] = result.findings
    assert finding.subject == "public.open_note"
    assert finding.details["reason"] == "owner"
    assert finding.fix is not None
    assert finding.fix.startswith("ALTER TABLE public.open_note FORCE ROW LEVEL SECURITY;")


def test_a_bypassrls_role_is_found_and_told_to_drop_it(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    app = new_role("bypasser", "NOLOGIN BYPASSRLS")
    _tenant_table(run)
    run(f"GRANT SELECT ON note TO {app}")
    with pg_engine.connect() as conn:
        result = check_privileges(conn, role=app)
    [finding] = result.findings
    assert finding.details == {"role": app, "reason": "bypassrls", "policies": 1, "forced": False}
    assert finding.fix == f"ALTER ROLE {app} NOBYPASSRLS;"


def test_an_ordinary_role_with_grants_is_quiet(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    app = new_role("app")
    _tenant_table(run)
    run(f"GRANT SELECT, INSERT ON note TO {app}")
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {app}"))
        access = role_access(conn)
        assert check_privileges(conn).findings == []
    assert [table.name for table in access.rls_tables] == ["public.note"]
    assert access.unprotected == [] and access.owned_tables == 0


def test_a_table_the_role_cannot_reach_is_not_its_concern(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    owner = new_role("owner")
    _tenant_table(run)
    run(f"ALTER TABLE note OWNER TO {owner}", f"REVOKE ALL ON note FROM {owner}")
    with pg_engine.connect() as conn:
        assert check_privileges(conn, role=owner).findings == []


def test_hostile_names_are_quoted_in_the_finding(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    owner = new_role('select "x"')
    table = quote_identifier('Mixed "Case"')
    _tenant_table(run, table)
    run(f"ALTER TABLE {table} OWNER TO {quote_identifier(owner)}")
    with pg_engine.connect() as conn:
        [finding] = check_privileges(conn, role=owner).findings
    assert finding.subject == 'public."Mixed ""Case"""'
    assert quote_identifier(owner, plain=True) in finding.what
    assert finding.fix is not None
    assert finding.fix.startswith('ALTER TABLE public."Mixed ""Case""" FORCE ROW LEVEL SECURITY;')


def test_an_unknown_role_is_skipped_with_the_way_to_name_one(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        result = check_privileges(conn, role="no_such_role_here")
    assert result.findings == [] and result.skipped is not None
    assert "no_such_role_here" in result.skipped and "rls_bypassed.role" in result.skipped


def test_the_doctor_checks_the_role_named_in_its_settings(
    run: Run, pg_engine: Engine, new_role: NewRole
) -> None:
    app = new_role("app")
    bypasser = new_role("bypasser", "NOLOGIN BYPASSRLS")
    _tenant_table(run)
    run(f"GRANT SELECT ON note TO {app}, {bypasser}")
    with pg_engine.connect() as conn:
        quiet = doctor(
            conn, checks=["rls_bypassed"], thresholds=parse_thresholds([f"rls_bypassed.role={app}"])
        )
        loud = doctor(
            conn, checks=["rls_bypassed"], thresholds={"rls_bypassed": {"role": bypasser}}
        )
    assert quiet.findings == [] and not quiet.skipped
    assert [f.details["role"] for f in loud.findings] == [bypasser]
