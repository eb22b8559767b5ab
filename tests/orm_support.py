"""Helpers of the ORM pattern tests."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool


@dataclass(frozen=True)
class Role:
    """An ordinary login role: no superuser, owns nothing; the test grants what it needs."""

    quoted: str
    url: sa.URL

    def engine(self) -> Engine:
        """Return an engine that connects as this role."""
        return sa.create_engine(self.url.set(drivername="postgresql+psycopg"), poolclass=NullPool)
