"""The edge of the API: errors into one JSON shape, tokens into callers, audit.

Every error a route meets becomes ``{"error": {"type", "message", "hint"}}`` with a
status code: 400 for a mistake in the request, 401 without a valid token, 403 without
the scope, 404 for something that is not there, 409 for a state that forbids it now
(a lock held, an extension missing), 429 past the rate limit, 503 when the database
cannot be reached, 500 for a failure of the work. Messages are scrubbed of secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from pgwarden.api._examples import EXAMPLES
from pgwarden.api._runtime import Runtime
from pgwarden.api.audit import record_call
from pgwarden.api.errors import RateLimited, ScopeMissing, TokenRequired
from pgwarden.api.forms import read_form
from pgwarden.api.tokens import ApiToken, Scope
from pgwarden.errors import ConnectionFailed, NotEnabled, PgwardenError, UserError
from pgwarden.insight.errors import CheckSkipped
from pgwarden.urls import redact_text

__all__ = [
    "Caller",
    "ErrorBody",
    "PgwardenRoute",
    "audited",
    "authorize",
    "error_message",
    "error_response",
]

log = logging.getLogger("pgwarden.api")
T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="A token from `pgwarden tokens create`.")


class ErrorDetail(BaseModel):
    """What went wrong and what to do about it."""

    type: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """The one shape of every error the API answers with."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLES["ErrorBody"]]})

    error: ErrorDetail


def _status(error: Exception) -> int:
    code = getattr(error, "status_code", None)
    if isinstance(code, int):
        return code
    name = type(error).__name__
    if name.endswith("NotFound"):
        return 404
    if name in ("LockHeld", "TargetNotEmpty") or isinstance(error, NotEnabled | CheckSkipped):
        return 409
    if isinstance(error, ConnectionFailed):
        return 503
    if isinstance(error, UserError):
        return 400
    return 500


def _said(error: Exception) -> tuple[str, str | None]:
    if isinstance(error, PgwardenError):
        return error.message, error.hint
    if isinstance(error, CheckSkipped):
        return error.reason, None
    # a database failure mid-request: the first line of what the server said
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__), None


def error_message(error: Exception) -> str:
    """Return what ``error`` says, scrubbed of secrets, in one line."""
    return redact_text(_said(error)[0])


def error_response(error: Exception) -> JSONResponse:
    """Return the JSON answer for ``error``: its type, message and hint, no secret."""
    message, hint = _said(error)
    status = _status(error)
    body = ErrorBody(
        error=ErrorDetail(
            type=type(error).__name__
            if status != 500 or isinstance(error, PgwardenError)
            else "DatabaseError",
            message=redact_text(message),
            hint=None if hint is None else redact_text(hint),
        )
    )
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class PgwardenRoute(APIRoute):
    """A route whose pgwarden errors (and database failures) become the one error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (PgwardenError, CheckSkipped, DBAPIError) as error:
                if _status(error) >= 500:
                    log.warning(
                        "%s %s failed: %s",
                        request.method,
                        request.url.path,
                        redact_text(str(error)).splitlines()[0] if str(error) else "",
                    )
                return error_response(error)
            except HTTPException as error:  # FastAPI's own (a body that is not JSON): one shape
                body = ErrorBody(
                    error=ErrorDetail(type="BadRequest", message=str(error.detail), hint=None)
                )
                return JSONResponse(
                    body.model_dump(), status_code=error.status_code, headers=error.headers
                )

        return handle


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token (by header or by the dashboard's cookie), or nobody."""

    token: ApiToken | None
    via: str  # "bearer", "cookie" or "anonymous"
    secret: str | None = field(default=None, repr=False)  # never in a log or traceback

    @property
    def token_id(self) -> int | None:
        """Return the token's id, None for an anonymous caller."""
        return None if self.token is None else self.token.id


CSRF_HEADER = "X-CSRF-Token"
_SAFE = ("GET", "HEAD", "OPTIONS")


def authorize(runtime: Runtime, scope: Scope) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """Return a dependency that admits callers allowed ``scope``, and refuses the rest.

    A changing request with the dashboard's cookie must carry the session's form token
    (a form field or the ``X-CSRF-Token`` header): another site cannot forge it.
    """

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Caller:
        secret = credentials.credentials if credentials is not None else None
        via = "bearer"
        if secret is None:
            secret = request.cookies.get(runtime.options.cookie_name)
            via = "cookie"
        if secret is None:
            if scope == "read" and runtime.options.anonymous_read:
                return Caller(None, "anonymous")
            raise TokenRequired(
                "this route needs a token.",
                hint="Send `Authorization: Bearer <token>`; `pgwarden tokens create` makes one.",
            )
        token = await runtime.token(secret)
        if token is None:
            raise TokenRequired(
                "the token is not valid: unknown or revoked.",
                hint="Use a token listed by `pgwarden tokens list`, or create one.",
            )
        caller = Caller(token, via, secret)
        if not token.allows(scope):
            error = ScopeMissing(
                f"this route needs the {scope} scope; the token has {token.scope}.",
                hint=f"Use a token created with `pgwarden tokens create --scope {scope}`.",
            )
            if request.method not in _SAFE:
                await _record(runtime, caller, request, {}, error)
            raise error
        if via == "cookie" and request.method not in _SAFE:
            given = request.headers.get(CSRF_HEADER) or await _form_field(request, "csrf")
            if not runtime.csrf_ok(secret, given):
                raise ScopeMissing(
                    "the form token is missing or stale.",
                    hint="Reload the page and submit the form again.",
                )
        return caller

    return dependency


async def _form_field(request: Request, name: str) -> str | None:
    return (await read_form(request)).get(name)


async def _record(
    runtime: Runtime,
    caller: Caller,
    request: Request,
    arguments: dict[str, Any],
    error: Exception | None,
    outcome: str | None = None,
) -> None:
    status = (202 if outcome == "started" else 200) if error is None else _status(error)
    if outcome is None:
        outcome = "ok" if error is None else "refused" if status < 500 else "failed"
    detail = None
    if error is not None:
        detail = error.message if isinstance(error, PgwardenError) else str(error)
    await runtime.call(
        record_call,
        token_id=caller.token_id,
        method=request.method,
        route=getattr(request.scope.get("route"), "path", request.url.path),
        arguments=arguments,
        outcome=outcome,
        status=status,
        detail=detail,
        commit=True,
    )


async def audited(
    runtime: Runtime,
    caller: Caller,
    request: Request,
    arguments: dict[str, Any],
    work: Callable[[], Coroutine[Any, Any, T]],
    *,
    outcome: str = "ok",
) -> T:
    """Count the call against the rate limit, run ``work()``, and record what came of it."""
    try:
        runtime.count_call(caller.token_id)
    except RateLimited as error:
        await _record(runtime, caller, request, arguments, error)
        raise
    try:
        result = await work()
    except Exception as error:
        await _record(runtime, caller, request, arguments, error)
        raise
    await _record(runtime, caller, request, arguments, None, outcome)
    return result
