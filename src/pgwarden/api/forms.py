"""Read the dashboard's URL-encoded forms (without another dependency), and check them."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import ValidationError

from pgwarden.errors import UserError

__all__ = ["backup_id_of", "read_form", "validated"]

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


def backup_id_of(form: dict[str, str]) -> str:
    """Return the backup id a form names; refuse anything that is not one."""
    value = form.get("backup_id", "")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", value):
        raise UserError("the form named no backup.", hint="Reload the page.")
    return value


def validated(model: Any, values: dict[str, Any]) -> Any:
    """Return ``values`` as ``model``; a value out of bounds is a :class:`UserError`."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"the form is not valid: {problems}.", hint="Correct it.") from None
