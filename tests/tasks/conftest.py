"""Fixtures of the scheduled-job tests: target databases with data, a catalogue database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tasks_support import RecordingNotifier, fill

from pgwarden.testing.servers import TestServer


@pytest.fixture
def target_db(pg_server: TestServer) -> Iterator[str]:
    """Yield the URL of a fresh database holding a small table."""
    name = pg_server.create_database()
    url = pg_server.url(name)
    fill(url)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def catalogue_db(pg_server: TestServer) -> Iterator[str]:
    """Yield the URL of an empty database for the catalogue."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    from pgwarden.tasks.catalogue import dispose_engines

    dispose_engines()
    pg_server.drop_database(name)


@pytest.fixture
def notifier() -> RecordingNotifier:
    """Return a notifier that keeps every alert it is given."""
    return RecordingNotifier()
