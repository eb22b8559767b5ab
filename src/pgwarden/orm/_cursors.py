"""Opaque, tamper-evident page cursors: typed values, signed with HMAC-SHA256.

A cursor is ``base64url(payload) "." base64url(mac)``. The payload is JSON holding the
direction, a fingerprint of the listing's ordering and the ordering values of one row,
each tagged with its type so that it comes back as the same Python value (a ``Decimal``
stays a ``Decimal``, a ``datetime`` keeps its offset and microseconds). The MAC covers
the payload under the caller's secret: a changed cursor, or one signed with another
secret, is refused. Cursors are opaque to clients, not secret: do not order by a value
a client must not see.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from pgwarden.orm.errors import InvalidCursor, UnpageableQuery

__all__ = ["Cursor", "check_secret", "decode_cursor", "encode_cursor"]

_DOMAIN = b"pgwarden page cursor v1\x00"
_MIN_SECRET = 16


@dataclass(frozen=True)
class Cursor:
    """What a cursor says: page ``backwards`` or forwards from the row with ``values``."""

    backwards: bool
    ordering: str
    values: tuple[Any, ...]


def check_secret(secret: str | bytes) -> bytes:
    """Return ``secret`` as bytes, refusing one too short to sign with."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < _MIN_SECRET:
        raise UnpageableQuery(
            f"the cursor secret has {len(key)} bytes; at least {_MIN_SECRET} are needed.",
            hint="Pass a long random secret kept with your settings, e.g. "
            "secrets.token_urlsafe(32).",
        )
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(value: Any) -> list[Any]:
    # bool before int: bool is an int. datetime before date: datetime is a date.
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, enum.Enum):
        return ["e", value.name]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value.hex()]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, Decimal):
        return ["d", str(value)]
    if isinstance(value, datetime | time):
        # The offset apart, in microseconds: ISO 8601 text cannot say every offset.
        offset = value.utcoffset()
        naive = value.replace(tzinfo=None).isoformat()
        micros = None if offset is None else offset // timedelta(microseconds=1)
        return ["dt" if isinstance(value, datetime) else "t", [naive, micros]]
    if isinstance(value, date):
        return ["da", value.isoformat()]
    if isinstance(value, timedelta):
        return ["td", [value.days, value.seconds, value.microseconds]]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, bytes | bytearray | memoryview):
        return ["by", _b64(bytes(value))]
    raise UnpageableQuery(
        f"a page cursor cannot hold an ordering value of type {type(value).__name__}.",
        hint="Order by columns of scalar types (numbers, text, times, UUIDs, bytes).",
    )


def _zoned(value: Any, micros: int | None) -> Any:
    if micros is None:
        return value
    return value.replace(tzinfo=timezone(timedelta(microseconds=micros)))


def _untag(item: list[Any], enum_class: type[enum.Enum] | None) -> Any:
    kind, rest = item[0], item[1:]
    value = rest[0] if rest else None
    decoders: dict[str, Any] = {
        "n": lambda v: None,
        "b": bool,
        "i": int,
        "f": float.fromhex,
        "s": str,
        "d": Decimal,
        "dt": lambda v: _zoned(datetime.fromisoformat(v[0]), v[1]),
        "da": date.fromisoformat,
        "t": lambda v: _zoned(time.fromisoformat(v[0]), v[1]),
        "td": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
        "u": uuid.UUID,
        "by": _unb64,
    }
    if kind == "e":
        return enum_class[str(value)] if enum_class is not None else value
    return decoders[kind](value)


def encode_cursor(key: bytes, cursor: Cursor) -> str:
    """Return ``cursor`` as an opaque string signed with ``key``."""
    payload = json.dumps(
        {"b": cursor.backwards, "o": cursor.ordering, "k": [_tag(v) for v in cursor.values]},
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def decode_cursor(
    key: bytes, text: str, *, enum_classes: Sequence[type[enum.Enum] | None] = ()
) -> Cursor:
    """Return the cursor ``text`` says, if ``key`` signed it; else raise InvalidCursor."""
    refused = InvalidCursor(
        "this page cursor is not one this listing issued: it was changed, cut short, or "
        "signed with another secret.",
        hint="Start again from the first page, and pass cursors back exactly as received.",
    )
    try:
        payload_text, mac_text = text.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise refused from None
    expected = hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise refused
    try:  # signed by us: a failure below is a bug of ours, not a client's tampering
        data = json.loads(payload)
        classes = list(enum_classes) + [None] * (len(data["k"]) - len(enum_classes))
        values = tuple(_untag(item, cls) for item, cls in zip(data["k"], classes, strict=False))
        return Cursor(backwards=bool(data["b"]), ordering=str(data["o"]), values=values)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidCursor(
            f"this page cursor cannot be read: {exc}.",
            hint="Start again from the first page.",
        ) from None
