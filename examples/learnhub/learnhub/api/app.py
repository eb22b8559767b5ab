"""The learnhub ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from learnhub.api.graphql import graphql_router
from learnhub.api.rest import router as rest_router
from learnhub.app_role import app_database_url
from learnhub.db import make_engine, make_sessionmaker
from pgwarden import observe
from pgwarden.observe.middleware import ObserveMiddleware


def create_app(engine: AsyncEngine | None = None) -> FastAPI:
    """Return the app; with ``engine`` it uses that engine (tests, the workload), else it
    creates one when it starts and disposes of it when it stops.

    Its own engine connects as the API's role, ``learnhub_app`` (LEARNHUB_APP_URL, else
    DATABASE_URL with that role's name and password: :mod:`learnhub.app_role`), never as
    the tables' owner, so that row-level security applies to it.

    pgwarden observes it the way any app would add it: ``observe.instrument(engine)`` for
    statements, slow queries and metrics, and the middleware for N+1s and Server-Timing.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is not None:
            yield
            return
        own = make_engine(app_database_url())
        observe.instrument(own)
        app.state.engine = own
        app.state.sessions = make_sessionmaker(own)
        try:
            yield
        finally:
            await own.dispose()

    app = FastAPI(title="learnhub", lifespan=lifespan)
    if engine is not None:
        # In-process clients (httpx's ASGI transport) do not run the lifespan.
        observe.instrument(engine)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
    app.add_middleware(ObserveMiddleware, mode="log")
    app.include_router(rest_router)
    app.include_router(graphql_router(), prefix="/graphql")
    return app
