"""The learnhub ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from learnhub.api.graphql import graphql_router
from learnhub.api.rest import router as rest_router
from learnhub.db import make_engine, make_sessionmaker


def create_app(engine: AsyncEngine | None = None) -> FastAPI:
    """Return the app; with ``engine`` it uses that engine (tests, the workload), else it
    creates one from DATABASE_URL when it starts and disposes of it when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is not None:
            yield
            return
        own = make_engine()
        app.state.engine = own
        app.state.sessions = make_sessionmaker(own)
        try:
            yield
        finally:
            await own.dispose()

    app = FastAPI(title="learnhub", lifespan=lifespan)
    if engine is not None:
        # In-process clients (httpx's ASGI transport) do not run the lifespan.
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
    app.include_router(rest_router)
    app.include_router(graphql_router(), prefix="/graphql")
    return app
