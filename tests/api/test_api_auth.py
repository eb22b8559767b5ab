"""Tokens and scopes: who may call what, and what the audit record keeps."""

from __future__ import annotations

import re
from typing import Any

import pytest
from api_support import auth
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pgwarden.api import audit_entries, list_tokens, revoke_token

PREFIX = "/v1/database"
NEEDS = {  # every changing route, and the scope it needs
    "/sessions/{pid}/cancel": "operate",
    "/sessions/{pid}/terminate": "operate",
    "/maintenance/plan": "operate",
    "/maintenance/run": "operate",
    "/space/snapshots": "operate",
    "/backups": "admin",
    "/backups/{backup_id}/verify": "admin",
    "/backups/{backup_id}/restore": "admin",
    "/migrations/plan": "admin",
    "/migrations/upgrade": "admin",
}
BODIES: dict[str, Any] = {"/backups/{backup_id}/restore": {"database": "restored"}}


def _api_routes(client: Any) -> list[tuple[str, set[str]]]:
    """Return each route of the OpenAPI document with its methods."""
    paths = client.app.openapi()["paths"]
    return [(path, {method.upper() for method in paths[path]}) for path in paths]


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "pid" else "x", path)


def _engine(url: str) -> Any:
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"))


def test_every_changing_route_is_listed_with_its_scope(client: Any) -> None:
    changing = {
        path.removeprefix(PREFIX) for path, methods in _api_routes(client) if methods - {"GET"}
    }
    assert changing == set(NEEDS)


@pytest.mark.parametrize("path", sorted(NEEDS))
def test_a_changing_route_refuses_no_token_and_a_lesser_scope(
    client: Any, tokens: dict[str, str], path: str
) -> None:
    url = PREFIX + _concrete(path)
    body = BODIES.get(path, {})
    anonymous = client.post(url, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "TokenRequired"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    lesser = ["read"] if NEEDS[path] == "operate" else ["read", "operate"]
    for scope in lesser:
        refused = client.post(url, json=body, headers=auth(tokens[scope]))
        assert refused.status_code == 403, (scope, refused.text)
        assert refused.json()["error"]["type"] == "ScopeMissing"
    bogus = client.post(url, json=body, headers=auth("pgw_" + "x" * 43))
    assert bogus.status_code == 401


def test_read_routes_refuse_without_a_token_unless_anonymous_read(
    make_client: Any, tokens: dict[str, str]
) -> None:
    closed = make_client()
    reads = [
        _concrete(path)
        for path, methods in _api_routes(closed)
        if methods == {"GET"} and not path.startswith(f"{PREFIX}/health")
    ]
    assert f"{PREFIX}/summary" in reads and f"{PREFIX}/metrics" in reads
    for url in reads:
        assert closed.get(url).status_code == 401, url
    assert closed.get(f"{PREFIX}/summary", headers=auth(tokens["read"])).status_code == 200
    opened = make_client(anonymous_read=True)
    assert opened.get(f"{PREFIX}/summary").status_code == 200
    assert opened.get(f"{PREFIX}/connections").status_code == 200
    # Anonymous read opens no changing route, nor the admin-only audit record.
    assert opened.post(f"{PREFIX}/maintenance/plan", json={}).status_code == 401
    assert opened.get(f"{PREFIX}/audit").status_code == 401
    # A token presented must still be valid.
    assert opened.get(f"{PREFIX}/summary", headers=auth("pgw_nope")).status_code == 401


def test_health_needs_no_token(client: Any) -> None:
    assert client.get(f"{PREFIX}/health").json() == {"status": "ok"}
    ready = client.get(f"{PREFIX}/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_revoked_token_is_refused(client: Any, tokens: dict[str, str], pg_url: str) -> None:
    url = f"{PREFIX}/summary"
    assert client.get(url, headers=auth(tokens["read"])).status_code == 200
    engine = _engine(pg_url)
    with engine.begin() as conn:
        read = next(t for t in list_tokens(conn) if t.scope == "read")
        revoke_token(conn, read.id)
        assert [t.id for t in list_tokens(conn, revoked=True) if t.revoked_at] == [read.id]
    engine.dispose()
    client.app.state.runtime.forget_tokens()  # another process: within the cache time
    assert client.get(url, headers=auth(tokens["read"])).status_code == 401


def test_changing_calls_are_audited_without_secrets(
    client: Any, tokens: dict[str, str], pg_url: str
) -> None:
    plan = client.post(
        f"{PREFIX}/maintenance/plan",
        json={"command": "analyze"},
        headers=auth(tokens["operate"]),
    )
    assert plan.status_code == 200, plan.text
    assert plan.json()["dry_run"] is True
    refused = client.post(f"{PREFIX}/backups", headers=auth(tokens["operate"]))
    assert refused.status_code == 403
    failed = client.post(
        f"{PREFIX}/sessions/2147483647/cancel", json={}, headers=auth(tokens["operate"])
    )
    assert failed.status_code == 400, failed.text
    listed = client.get(f"{PREFIX}/audit", headers=auth(tokens["admin"]))
    assert listed.status_code == 200
    engine = _engine(pg_url)
    with engine.connect() as conn:
        entries = audit_entries(conn)
        ids = {t.scope: t.id for t in list_tokens(conn)}
    engine.dispose()
    assert listed.json()[0]["id"] == entries[0].id
    by_route = {(e.route, e.outcome): e for e in entries}
    ok = by_route[(f"{PREFIX}/maintenance/plan", "ok")]
    assert ok.token_id == ids["operate"] and ok.arguments["command"] == "analyze"
    assert ok.method == "POST" and ok.status == 200
    assert by_route[(f"{PREFIX}/backups", "refused")].status == 403
    cancel = by_route[(f"{PREFIX}/sessions/{{pid}}/cancel", "refused")]
    assert cancel.arguments["pid"] == 2147483647 and cancel.detail
    everything = listed.text + plan.text + refused.text + failed.text
    for secret in tokens.values():
        assert secret not in everything


def test_changing_calls_are_rate_limited(make_client: Any, tokens: dict[str, str]) -> None:
    client = make_client(rate_limit=2)
    url, body = f"{PREFIX}/maintenance/plan", {"command": "analyze"}
    for _ in range(2):
        assert client.post(url, json=body, headers=auth(tokens["operate"])).status_code == 200
    limited = client.post(url, json=body, headers=auth(tokens["operate"]))
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "RateLimited"
    assert int(limited.headers["retry-after"]) >= 1
    # Reads are not limited, and another token has its own allowance.
    assert client.get(f"{PREFIX}/summary", headers=auth(tokens["operate"])).status_code == 200
    assert client.post(url, json=body, headers=auth(tokens["admin"])).status_code == 200


def test_cors_is_off_unless_origins_are_given(make_client: Any) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    closed = make_client()
    answer = closed.options(f"{PREFIX}/summary", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    opened = make_client(cors_origins=("https://ops.example",))
    allowed = opened.options(
        f"{PREFIX}/summary", headers={**preflight, "Origin": "https://ops.example"}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example"


def test_concurrent_first_changing_calls_are_all_recorded(
    served: tuple[str, Any], tokens: dict[str, str], pg_url: str
) -> None:
    import threading

    import httpx

    url = f"{served[0]}{PREFIX}/maintenance/plan"
    statuses: list[int] = []

    def call() -> None:
        answer = httpx.post(url, json={"command": "analyze"}, headers=auth(tokens["operate"]))
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 8
    engine = _engine(pg_url)
    with engine.connect() as conn:
        assert len(audit_entries(conn)) == 8
    engine.dispose()


def test_arguments_jsonb_cannot_hold_are_audited_readable(
    client: Any, tokens: dict[str, str], pg_url: str
) -> None:
    # NUL and a lone surrogate: jsonb refuses both; the call is still answered and audited.
    body = '{"command": "analyze", "tables": ["a\\u0000b", "c\\ud800d"]}'
    plan = client.post(
        f"{PREFIX}/maintenance/plan",
        content=body,
        headers={**auth(tokens["operate"]), "Content-Type": "application/json"},
    )
    assert plan.status_code == 400, plan.text
    assert "unknown tables" in plan.json()["error"]["message"]
    engine = _engine(pg_url)
    with engine.connect() as conn:
        [entry] = [e for e in audit_entries(conn) if e.route == f"{PREFIX}/maintenance/plan"]
    engine.dispose()
    assert entry.arguments["tables"] == ["a\ufffdb", "c?d"] and entry.status == 400
