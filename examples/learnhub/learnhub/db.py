"""learnhub's engine and sessions, built with pgwarden's factory."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from pgwarden.db.engines import create_async_engine
from pgwarden.orm import Keyring, enable_soft_delete_filter

log = logging.getLogger(__name__)

# DELIBERATELY public: a development key so that the demo runs with nothing configured.
# Any real deployment sets PGWARDEN_ENCRYPTION_KEYS, and this key is then never used.
DEVELOPMENT_KEYS = "dev1:bGVhcm5odWItZGV2ZWxvcG1lbnQta2V5LTMyYnl0ZXM="


class LearnhubSession(Session):
    """learnhub's session: soft-deleted rows are hidden unless asked for."""


enable_soft_delete_filter(LearnhubSession)


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    """Return the keyring for encrypted columns: PGWARDEN_ENCRYPTION_KEYS, else the dev key."""
    configured = os.environ.get("PGWARDEN_ENCRYPTION_KEYS")
    if not configured:
        log.warning("PGWARDEN_ENCRYPTION_KEYS is not set; using learnhub's development key")
    return Keyring.from_setting(configured or DEVELOPMENT_KEYS)


def make_engine(url: str | None = None) -> AsyncEngine:
    """Return an async engine on ``url`` (default: DATABASE_URL)."""
    return create_async_engine(url, application_name="learnhub")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory the app and its tools use."""
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=LearnhubSession)
