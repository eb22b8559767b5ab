"""Fixtures of the observe tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pgwarden.observe.instrument import query_log


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Collect every record of the query log, DEBUG included, during the test."""
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    query_log.addHandler(handler)
    old = query_log.level
    query_log.setLevel(logging.DEBUG)
    yield captured
    query_log.removeHandler(handler)
    query_log.setLevel(old)
