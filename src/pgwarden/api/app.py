"""The router factory and the standalone application.

``router(settings)`` returns a FastAPI ``APIRouter`` to include in any FastAPI app;
``create_app(settings)`` returns a whole FastAPI app (which a Starlette app can
``Mount``), as ``pgwarden serve`` runs it::

    from fastapi import FastAPI
    import pgwarden.api
    from pgwarden.config import load_settings

    app = FastAPI()
    app.include_router(pgwarden.api.router(load_settings()))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from pgwarden.api._edge import PgwardenRoute, authorize
from pgwarden.api._examples import EXAMPLES
from pgwarden.api._runtime import Runtime
from pgwarden.api.backups import add_backup_routes
from pgwarden.api.migrations import add_migration_routes
from pgwarden.api.monitoring import add_monitoring_routes
from pgwarden.api.observations import add_observation_routes
from pgwarden.api.operations import add_operation_routes
from pgwarden.api.options import ApiOptions
from pgwarden.config import Settings, load_settings
from pgwarden.errors import ConfigError

__all__ = ["create_app", "router", "with_examples"]


def with_examples(app: FastAPI) -> dict[str, Any]:
    """Return ``app``'s OpenAPI document with each response model's example whole.

    FastAPI drops every null from the document, the nulls of examples too, which leaves
    an example without keys its schema requires; the examples are put back as written.
    A host application can serve its document so: ``app.openapi = lambda: with_examples(app)``.
    """
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name in EXAMPLES and "examples" in schema:
                schema["examples"] = [EXAMPLES[name]]
        app.openapi_schema = document
    return app.openapi_schema


def router(
    settings: Settings | None = None, options: ApiOptions | None = None, **changes: Any
) -> APIRouter:
    """Return the admin API (and dashboard) as a router to include in a FastAPI app.

    ``settings`` default to :func:`~pgwarden.config.load_settings`; ``options`` (or
    keyword ``changes`` to the defaults: ``prefix="/admin/db"``, ``anonymous_read=True``)
    are :class:`~pgwarden.api.ApiOptions`. The router's ``runtime`` attribute holds
    its engine, caches and jobs; call ``router.runtime.dispose()`` when done with it.
    """
    chosen = options or ApiOptions()
    if changes:
        from dataclasses import replace

        chosen = replace(chosen, **changes)
    prefix = chosen.prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ConfigError(
            f"the API prefix {chosen.prefix!r} must start with /.", hint="Use /v1/database."
        )
    runtime = Runtime(settings or load_settings(), chosen)
    result = APIRouter(prefix=prefix, route_class=PgwardenRoute)
    read, operate, admin = (authorize(runtime, scope) for scope in ("read", "operate", "admin"))
    add_monitoring_routes(result, runtime, read)
    add_operation_routes(result, runtime, read, operate, admin)
    add_migration_routes(result, runtime, read, admin)
    add_backup_routes(result, runtime, read, admin)
    add_observation_routes(result, runtime, read)
    if chosen.dashboard:
        from pgwarden.api.dashboard import add_dashboard_routes

        add_dashboard_routes(result, runtime)
    result.runtime = runtime  # type: ignore[attr-defined]
    return result


def create_app(
    settings: Settings | None = None, options: ApiOptions | None = None, **changes: Any
) -> FastAPI:
    """Return a FastAPI app serving :func:`router` alone, its OpenAPI at ``/openapi.json``."""
    from pgwarden import __version__

    api = router(settings, options, **changes)
    runtime: Runtime = api.runtime  # type: ignore[attr-defined]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.dispose()

    app = FastAPI(
        title="pgwarden admin API",
        version=__version__,
        description="Health, queries, indexes, space, sessions, maintenance and backups of "
        "one PostgreSQL database. Authenticate with `Authorization: Bearer <token>` "
        "(`pgwarden tokens create --scope read|operate|admin`).",
        lifespan=lifespan,
    )
    app.include_router(api)
    app.openapi = lambda: with_examples(app)  # type: ignore[method-assign]
    if runtime.options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(runtime.options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.state.runtime = runtime
    return app
