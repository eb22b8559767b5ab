"""The dashboard: server-rendered pages over the same library calls as the JSON routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pgwarden.api._runtime import Runtime

__all__ = ["add_dashboard_routes"]


def add_dashboard_routes(router: APIRouter, runtime: Runtime) -> None:
    """Add the dashboard's pages, login and static files to ``router``."""
    _ = (router, runtime, Any)
