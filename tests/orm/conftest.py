"""Fixtures of the ORM pattern tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgwarden.orm import keyring_from_settings


@pytest.fixture(autouse=True)
def no_encryption_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test with no PGWARDEN_ENCRYPTION_KEYS and no keyring cached from one."""
    monkeypatch.delenv("PGWARDEN_ENCRYPTION_KEYS", raising=False)
    keyring_from_settings.cache_clear()
    yield
    keyring_from_settings.cache_clear()
