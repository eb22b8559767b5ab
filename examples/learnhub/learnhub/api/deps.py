"""Request dependencies shared by the REST and GraphQL routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from pgwarden.orm import set_tenant


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session for one request, scoped to the caller's organisation if given.

    ``X-Org-Id`` sets the tenant that row-level security on ``content`` keys on; it lasts
    for the request's transaction only.
    """
    async with request.app.state.sessions() as session:
        org = request.headers.get("x-org-id")
        if org is not None:
            if not org.isdigit():
                raise HTTPException(400, "X-Org-Id must be a number")
            await session.run_sync(set_tenant, int(org))
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
