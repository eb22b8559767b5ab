"""Fixtures of the index advisor's tests: the shop database, and each way of trying
candidates the server allows."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from advise_support import build_shop, hypopg_available
from pgwarden.testing.servers import TestServer


@pytest.fixture
def shop(pg_engine: Engine) -> Engine:
    """Return an engine on a new database holding the shop tables with data."""
    build_shop(pg_engine)
    return pg_engine


@pytest.fixture(params=["scratch", "hypopg"])
def method(request: pytest.FixtureRequest, pg_server: TestServer) -> str:
    """Return each way of trying candidates: a scratch copy, and hypopg where it exists."""
    if request.param == "hypopg" and not hypopg_available(pg_server.admin):
        pytest.skip("hypopg is not available on this server (apt-get install postgresql-NN-hypopg)")
    return str(request.param)
