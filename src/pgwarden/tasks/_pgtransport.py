"""kombu's SQLAlchemy transport with a short polling interval, for a PostgreSQL broker.

The stock transport hands every transport option to ``create_engine``, so its polling
interval (one second) cannot be set; with one message in flight per worker, a worker
then waits up to a second between two jobs. This one polls every
``[tasks] polling_interval`` (0.1 s by default).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine

__all__ = ["Transport"]


class Channel(kombu_sqlalchemy.Channel):
    """The stock channel, its engine made without the transport's own options."""

    def _engine_from_config(self) -> Any:
        return create_engine(self.connection.client.hostname, pool_pre_ping=True)


class Transport(kombu_sqlalchemy.Transport):
    """The stock transport with :class:`Channel` and a polling interval that can be set."""

    Channel = Channel
    polling_interval = 0.1
