"""Helpers of the admin API's tests."""

from __future__ import annotations


def auth(secret: str) -> dict[str, str]:
    """Return the header that presents ``secret``."""
    return {"Authorization": f"Bearer {secret}"}
