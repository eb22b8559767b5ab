"""Serve a database's health, queries, indexes, space, sessions, maintenance and backups
over HTTP: a FastAPI router with scoped tokens, Prometheus metrics and a dashboard.

Needs the ``api`` extra (``pip install 'pgwarden[api]'``)::

    from fastapi import FastAPI
    import pgwarden.api

    app = FastAPI()
    app.include_router(pgwarden.api.router())  # routes under /v1/database

or ``pgwarden serve``. Tokens are made with ``pgwarden tokens create --scope read``
(:func:`create_token`); every changing call is in the audit record (:func:`audit_entries`).
See ``docs/api.md``.
"""

from __future__ import annotations

from pgwarden._extras import importing_extra
from pgwarden.api.errors import (
    JobNotFound,
    MigrationRunning,
    RateLimited,
    ScopeMissing,
    TokenNotFound,
    TokenRequired,
)

with importing_extra(
    "api", "The admin API needs {package}", {"fastapi": "fastapi", "jinja2": "jinja2"}
):
    import fastapi  # noqa: F401
    import jinja2  # noqa: F401

from pgwarden.api.app import create_app, router, with_examples
from pgwarden.api.audit import AuditEntry, audit_entries, record_call
from pgwarden.api.jobs import Job, JobProgress, Jobs
from pgwarden.api.options import ApiOptions
from pgwarden.api.tokens import (
    SCOPES,
    ApiToken,
    NewToken,
    create_token,
    find_token,
    list_tokens,
    revoke_token,
)

__all__ = [
    "SCOPES",
    "ApiOptions",
    "ApiToken",
    "AuditEntry",
    "Job",
    "JobNotFound",
    "JobProgress",
    "Jobs",
    "MigrationRunning",
    "NewToken",
    "RateLimited",
    "ScopeMissing",
    "TokenNotFound",
    "TokenRequired",
    "audit_entries",
    "create_app",
    "create_token",
    "find_token",
    "list_tokens",
    "record_call",
    "revoke_token",
    "router",
    "with_examples",
]
