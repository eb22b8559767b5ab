"""Request dependencies shared by the REST and GraphQL routers: a session, and who is asking.

Who is asking comes from the bearer token alone (:mod:`learnhub.auth`): its session
names the user, whose organisation becomes the tenant that row-level security keys on
(``set_tenant``) and whose id the audit log records (``set_actor``), both for this
request's transaction only. Headers such as ``X-Org-Id`` are never read. Without a
token a request is anonymous: the database shows it public content only, and the
routes that need a user refuse it with 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from learnhub.auth import Principal, parse_bearer, resolve_token
from pgwarden.orm import set_actor, set_tenant

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def open_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session for one request; it ends (and its settings with it) with the request."""
    async with request.app.state.sessions() as session:
        yield session


_Opened = Annotated[AsyncSession, Depends(open_session)]


async def get_principal(request: Request, session: _Opened) -> Principal | None:
    """Return who the request's bearer token signs in, or ``None`` for an anonymous request.

    A malformed header, or a token that is unknown or expired, is refused with 401
    rather than served as anonymous: the client meant to sign in.
    """
    try:
        token = parse_bearer(request.headers.get("authorization"))
    except ValueError as exc:
        raise HTTPException(401, str(exc), headers=_CHALLENGE) from None
    if token is None:
        return None
    principal = await resolve_token(session, token)
    if principal is None:
        raise HTTPException(401, "the session is unknown or has expired", headers=_CHALLENGE)
    await session.run_sync(set_tenant, principal.org_id)
    await session.run_sync(set_actor, principal.actor)
    return principal


MaybeUser = Annotated[Principal | None, Depends(get_principal)]


async def get_session(session: _Opened, principal: MaybeUser) -> AsyncSession:
    """Return the request's session, scoped to whoever the request signs in.

    Routes take this one, never :func:`open_session`: a route cannot forget to scope
    its queries, because it cannot have a session that was not scoped.
    """
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def require_principal(principal: MaybeUser) -> Principal:
    """Return who the request signs in; refuse an anonymous request with 401."""
    if principal is None:
        raise HTTPException(401, "sign in: send Authorization: Bearer <token>", headers=_CHALLENGE)
    return principal


SignedIn = Annotated[Principal, Depends(require_principal)]
