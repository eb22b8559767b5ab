"""Read the dashboard's URL-encoded forms without another dependency."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

__all__ = ["read_form"]

_MAX_FORM = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """Return the fields of a URL-encoded form body (the last of repeated names wins).

    The body is read once and kept on the request, so a dependency and the route can
    both look at it. A body of another type, or over 64 KiB, reads as no fields.
    """
    cached = request.scope.get("pgwarden.form")
    if isinstance(cached, dict):
        return cached
    fields: dict[str, str] = {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        body = await request.body()
        if len(body) <= _MAX_FORM:
            fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    request.scope["pgwarden.form"] = fields
    return fields
