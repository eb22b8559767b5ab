"""learnhub's least privilege, through its HTTP API on the real database: the API's own
role, the tenant and actor from a session token, and row-level security between
organisations, whatever headers a caller sends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from learnhub.__main__ import main as learnhub_cli
from learnhub.app_role import app_password, app_url, role_name
from learnhub.auth import hash_token
from learnhub.db import make_engine
from learnhub.tenancy import Tenancy, show_tenancy
from learnhub_support import Client, first_user, scalar, sign_in, with_client

from pgwarden.db.engines import create_engine
from pgwarden.errors import ConfigError
from pgwarden.insight import check_privileges, doctor, role_access
from pgwarden.testing.servers import TestServer

FORGED = ("X-Org-Id", "X-Tenant-Id", "X-User-Id", "X-Forwarded-User")


def _forged(org: int, user: int) -> dict[str, str]:
    """Return every header a caller might hope picks a tenant or a user."""
    return {name: str(user if "User" in name else org) for name in FORGED}


def _private_content(url: str, org: int) -> int:
    """Return a published, organisation-only piece of content of ``org``."""
    found = scalar(
        url,
        "SELECT min(id) FROM content WHERE org_id = :org AND visibility = 'organization'"
        " AND state = 'published' AND deleted_at IS NULL",
        org=org,
    )
    assert found is not None
    return int(found)


def _rows(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(sa.text(query), params)]
    engine.dispose()
    return rows


def test_another_organisations_content_cannot_be_read_whatever_the_headers(
    seeded_url: str,
) -> None:
    theirs = _private_content(seeded_url, 2)
    slug = scalar(seeded_url, "SELECT slug FROM content WHERE id = :id", id=theirs)
    their_user = first_user(seeded_url, 2)
    forged = _forged(2, their_user)

    async def body(send: Client) -> None:
        for path in (f"/api/content/{theirs}", f"/api/content/by-slug/{slug}"):
            response, _ = await send("GET", path, headers=forged)
            assert response.status_code == 404, path
        comments, _ = await send("GET", f"/api/content/{theirs}/comments", headers=forged)
        assert comments.status_code == 200 and comments.json() == []
        listed, _ = await send("GET", "/api/content?limit=100", headers=forged)
        ids = {item["id"] for item in listed.json()}
        orgs = {
            org for (org,) in _rows(seeded_url, "SELECT org_id FROM content WHERE id = ANY(:ids)",
                                    ids=list(ids))
        }  # fmt: skip
        assert theirs not in ids and 1 in orgs
        public = [item for item in listed.json() if item["visibility"] == "public"]
        others = _rows(
            seeded_url,
            "SELECT id FROM content WHERE id = ANY(:ids) AND org_id <> 1",
            ids=list(ids),
        )
        assert {row[0] for row in others} <= {item["id"] for item in public}
        graphql, _ = await send(
            "POST",
            "/graphql",
            json={"query": f"{{ content(id: {theirs}) {{ id title }} }}"},
            headers=forged,
        )
        assert graphql.json() == {"data": {"content": None}}
        user, _ = await send("GET", f"/api/users/{their_user}", headers=forged)
        assert user.status_code == 404

    with_client(seeded_url, body, org=1)


def test_another_organisations_content_cannot_be_changed(seeded_url: str) -> None:
    theirs = _private_content(seeded_url, 2)
    public_theirs = scalar(
        seeded_url,
        "SELECT min(id) FROM content WHERE org_id = 2 AND visibility = 'public'"
        " AND deleted_at IS NULL",
    )
    before = _rows(seeded_url, "SELECT * FROM content WHERE org_id = 2 ORDER BY id")

    async def body(send: Client) -> None:
        for target in (theirs, public_theirs):
            response, _ = await send(
                "PATCH",
                f"/api/content/{target}",
                json={"title": "taken over", "visibility": "public"},
                headers=_forged(2, first_user(seeded_url, 2)),
            )
            assert response.status_code == 404, target
        created, _ = await send(
            "POST",
            "/api/content",
            json={"title": "Planted", "org_id": 2, "author_id": 1},
            headers={"X-Org-Id": "2"},
        )
        assert created.status_code == 201
        assert created.json()["author"]["id"] == first_user(seeded_url, 1)

    with_client(seeded_url, body, org=1)
    assert _rows(seeded_url, "SELECT * FROM content WHERE org_id = 2 ORDER BY id") == before
    assert _rows(seeded_url, "SELECT org_id FROM content WHERE title = 'Planted'") == [(1,)]


def test_edits_are_audited_with_the_signed_in_user(seeded_url: str) -> None:
    ours = _private_content(seeded_url, 1)
    user = first_user(seeded_url, 1)

    async def body(send: Client) -> None:
        response, _ = await send(
            "PATCH",
            f"/api/content/{ours}",
            json={"summary": "Checked."},
            headers={"X-User-Id": "1", "X-Actor": "someone-else"},
        )
        assert response.status_code == 200 and response.json()["id"] == ours
        created, _ = await send("POST", "/api/content", json={"title": "New lesson"})
        assert created.status_code == 201

    with_client(seeded_url, body, user_id=user)
    audited = _rows(
        seeded_url,
        "SELECT action, actor, new_values ->> 'summary' FROM audit_log"
        " WHERE table_name = 'content' AND actor IS DISTINCT FROM 'seed' ORDER BY id",
    )
    assert audited == [
        ("UPDATE", f"user:{user}", "Checked."),
        ("INSERT", f"user:{user}", ""),
    ]


def test_anonymous_callers_see_public_content_and_may_not_write(seeded_url: str) -> None:
    ours = _private_content(seeded_url, 1)

    async def body(send: Client) -> None:
        listed, _ = await send("GET", "/api/content?limit=100", anonymous=True)
        assert listed.status_code == 200 and listed.json()
        assert {item["visibility"] for item in listed.json()} == {"public"}
        hidden, _ = await send(
            "GET", f"/api/content/{ours}", anonymous=True, headers={"X-Org-Id": "1"}
        )
        assert hidden.status_code == 404
        for method, path, json in (
            ("PATCH", f"/api/content/{ours}", {"title": "x"}),
            ("POST", "/api/content", {"title": "x"}),
            ("GET", "/api/users", None),
        ):
            refused, _ = await send(method, path, json=json, anonymous=True)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
        graphql, _ = await send(
            "POST", "/graphql", json={"query": "{ users { id } }"}, anonymous=True
        )
        assert "sign in" in graphql.json()["errors"][0]["message"]

    with_client(seeded_url, body, org=None)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer " + "A" * 43, "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "token"],
)
def test_a_bad_token_is_refused_not_served_as_anonymous(
    seeded_url: str, authorization: str
) -> None:
    async def body(send: Client) -> None:
        response, _ = await send(
            "GET", "/api/content", anonymous=True, headers={"Authorization": authorization}
        )
        assert response.status_code == 401

    with_client(seeded_url, body, org=None)


def test_expired_sessions_and_deleted_users_sign_no_one_in(seeded_url: str) -> None:
    user = first_user(seeded_url, 1)

    async def main() -> tuple[str, str]:
        engine = make_engine(app_url(seeded_url))
        try:
            return await sign_in(engine, user), await sign_in(engine, user)
        finally:
            await engine.dispose()

    expiring, deleted = asyncio.run(main())
    owner = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with owner.begin() as conn:
        conn.execute(
            sa.text("UPDATE user_sessions SET expires_at = now() WHERE token_hash = :h"),
            {"h": hash_token(expiring)},
        )
    owner.dispose()

    async def body(send: Client) -> None:
        response, _ = await send(
            "GET", "/api/content", anonymous=True, headers={"Authorization": f"Bearer {expiring}"}
        )
        assert response.status_code == 401
        ok, _ = await send(
            "GET", "/api/content", anonymous=True, headers={"Authorization": f"Bearer {deleted}"}
        )
        assert ok.status_code == 200
        owner = create_engine(seeded_url, poolclass=sa.pool.NullPool)
        with owner.begin() as conn:
            conn.execute(sa.text("UPDATE users SET deleted_at = now() WHERE id = :u"), {"u": user})
        owner.dispose()
        gone, _ = await send(
            "GET", "/api/content", anonymous=True, headers={"Authorization": f"Bearer {deleted}"}
        )
        assert gone.status_code == 401

    with_client(seeded_url, body, org=None)


def test_tokens_are_stored_only_as_their_sha256(seeded_url: str) -> None:
    user = first_user(seeded_url, 1)

    async def main() -> str:
        engine = make_engine(app_url(seeded_url))
        try:
            return await sign_in(engine, user)
        finally:
            await engine.dispose()

    token = asyncio.run(main())
    assert len(token) == 43  # 32 random bytes
    stored = _rows(
        seeded_url,
        "SELECT token_hash FROM user_sessions WHERE user_id = :u AND token_hash = :h",
        u=user,
        h=hashlib.sha256(token.encode()).hexdigest(),
    )
    assert len(stored) == 1
    leaked = scalar(
        seeded_url,
        "SELECT count(*) FROM user_sessions AS s WHERE strpos(s::text, :t) > 0",
        t=token,
    )
    assert leaked == 0


def test_the_apis_connection_is_neither_superuser_nor_owner(seeded_url: str) -> None:
    async def main() -> Any:
        engine = make_engine(app_url(seeded_url))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(role_access)
        finally:
            await engine.dispose()

    access = asyncio.run(main())
    assert access.role == role_name()
    assert not access.superuser and not access.bypass_rls and access.owned_tables == 0
    assert [t.name for t in access.rls_tables] == ["public.comments", "public.content"]
    assert access.unprotected == []
    # Only the grants it needs: no password hashes, no deletes, no analytics.
    privileges = dict(
        _rows(
            seeded_url,
            "SELECT p.privilege, has_table_privilege(:r, p.tbl, p.privilege)"
            " FROM (VALUES ('DELETE', 'content'), ('SELECT', 'events'),"
            " ('SELECT', 'page_views'), ('UPDATE', 'users'), ('SELECT', 'audit_log'))"
            " AS p(privilege, tbl)",
            r=access.role,
        )
    )
    assert set(privileges.values()) == {False}
    hashes = scalar(
        seeded_url,
        "SELECT has_column_privilege(:r, 'users', 'password_hash', 'SELECT')",
        r=access.role,
    )
    assert hashes is False


def test_the_doctor_is_quiet_for_learnhub_and_fires_for_a_superuser_app(
    seeded_url: str,
) -> None:
    app = create_engine(app_url(seeded_url), poolclass=sa.pool.NullPool)
    with app.connect() as conn:
        assert doctor(conn, checks=["rls_bypassed"]).findings == []
    app.dispose()
    owner = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with owner.connect() as conn:
        named = check_privileges(conn, role=role_name())
        as_owner = check_privileges(conn)
        superuser = conn.execute(
            sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    owner.dispose()
    assert named.findings == [] and named.skipped is None
    if not superuser:
        pytest.skip("the test server's role is not a superuser")
    assert sorted(f.subject for f in as_owner.findings) == ["public.comments", "public.content"]
    assert {f.details["reason"] for f in as_owner.findings} == {"superuser"}


def test_the_same_list_differs_by_organisation_and_a_forged_header_gets_nothing(
    seeded_url: str,
) -> None:
    async def main() -> Tenancy:
        engine = make_engine(app_url(seeded_url))
        try:
            return await show_tenancy(engine)
        finally:
            await engine.dispose()

    shown = asyncio.run(main())
    first, second, anonymous = shown.lists.values()
    own = [{i for i, v in listed if v == "organization"} for listed in (first, second)]
    assert own[0] and own[1] and not own[0] & own[1]
    assert {v for _, v in anonymous} == {"public"}
    assert shown.probe is not None
    assert (shown.probe.read_status, shown.probe.edit_status) == (404, 404)
    assert shown.probe.asker_org != shown.probe.owner_org
    assert shown.role.role == role_name() and shown.role.unprotected == []


@pytest.fixture
def demo_database(pg_server: TestServer) -> Iterator[str]:
    """Yield the name of a database the demo may recreate, dropped afterwards."""
    name = f"learnhub_demo_{secrets.token_hex(4)}"
    yield name
    pg_server.drop_database(name)


def test_the_demo_runs_the_workload_as_the_apis_role(
    pg_server: TestServer, learnhub_app_role: str, demo_database: str
) -> None:
    result = CliRunner().invoke(
        learnhub_cli,
        [
            "demo",
            "--database-url",
            pg_server.url("postgres"),
            "--database",
            demo_database,
            "--scale",
            "0.05",
            "--requests",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (
        f"ran the workload through the API as role {learnhub_app_role} "
        "(not a superuser, no BYPASSRLS, owns 0 tables): row-level security applies to it"
    ) in output
    assert "errors" not in output
    assert "GET 404, PATCH 404" in output
    password = os.environ["LEARNHUB_APP_PASSWORD"]
    assert password not in result.output


def test_a_generated_password_is_kept_in_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEARNHUB_APP_PASSWORD", raising=False)
    path = tmp_path / "keys" / "learnhub_app.password"
    monkeypatch.setenv("LEARNHUB_APP_PASSWORD_FILE", str(path))
    assert app_password() is None
    with pytest.raises(ConfigError, match="no password for learnhub's API role") as refused:
        app_url("postgresql://owner@db.example/learnhub")
    assert str(path) in (refused.value.hint or "")
    made = app_password(create=True)
    assert made is not None and len(made) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert app_password(create=True) == made == app_password()
    url = app_url("postgresql://owner:ownersecret@db.example/learnhub")
    assert f"{role_name()}:{made}@db.example/learnhub" in url and "ownersecret" not in url
