"""The OpenAPI document holds: schemathesis sends generated requests to every operation
of a served API and finds no server error and no answer outside the document."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import auth
from hypothesis import HealthCheck, settings

from pgwarden.api import create_app
from pgwarden.config import Settings

schemathesis = pytest.importorskip("schemathesis")
checks = pytest.importorskip("schemathesis.checks")

pytestmark = pytest.mark.slow

# Operations that would change more than a scratch database should see under random
# input (signal random pids, start backups and restores, run maintenance) are called
# with a token lacking their scope: their refusal, and what precedes it, is checked.
_REFUSED = {
    ("POST", "/v1/database/sessions/{pid}/cancel"),
    ("POST", "/v1/database/sessions/{pid}/terminate"),
    ("POST", "/v1/database/backups"),
    ("POST", "/v1/database/backups/{backup_id}/verify"),
    ("POST", "/v1/database/backups/{backup_id}/restore"),
    ("POST", "/v1/database/maintenance/run"),
    ("POST", "/v1/database/migrations/upgrade"),
}

# No server error, and every answer as documented: status, content type, headers, body.
# (Requests with undeclared extra query parameters are answered, as by any FastAPI app,
# so schemathesis's negative-data checks are left out.)
_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]

# The document does not depend on the database: read it from an app never connected.
_document = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none")).openapi()
schema = schemathesis.openapi.from_dict(_document)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_to_the_document(
    case: Any, served: tuple[str, Any], tokens: dict[str, str]
) -> None:
    key = (case.operation.method.upper(), case.operation.path)
    secret = tokens["read"] if key in _REFUSED else tokens["admin"]
    response = case.call_and_validate(base_url=served[0], headers=auth(secret), checks=_CHECKS)
    for value in tokens.values():
        assert value not in response.text
