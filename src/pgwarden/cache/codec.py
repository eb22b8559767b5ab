"""Encode result values as typed JSON and decode them back to the very same types.

No pickle: an entry read from Redis is untrusted input, and decoding it builds only
plain values (numbers, strings, dates, UUIDs, addresses, ranges) and members of enum
classes the application has mapped. Values JSON already holds unambiguously (None,
bool, int, float, str, list, dicts with string keys) stay as they are; everything else
is an object of one key, a NUL and the tag, holding the payload: ``{"\x00dec": "1.10"}``.
A dict of the application's whose keys are not all strings, or with a key starting
with NUL, is stored as a list of pairs under its own tag, so none passes for a tag.
Decoding runs in the C JSON parser, the tags turned back by its object hook.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.multirange import Multirange as PgMultirange
from psycopg.types.range import Range as PgRange
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.dialects.postgresql.ranges import MultiRange

from pgwarden.cache.errors import UnserializableValue

__all__ = ["Ref", "decode", "encode", "encode_value", "register_enum"]


class Ref(int):
    """Point at the n-th mapped object of a cached ORM result."""


_ENUMS: dict[str, type[enum.Enum]] = {}
_IP_TYPES: dict[str, Callable[[str], Any]] = {
    "ip4": ipaddress.IPv4Address,
    "ip6": ipaddress.IPv6Address,
    "if4": ipaddress.IPv4Interface,
    "if6": ipaddress.IPv6Interface,
    "net4": ipaddress.IPv4Network,
    "net6": ipaddress.IPv6Network,
}
_IP_TAGS = {cls: tag for tag, cls in _IP_TYPES.items()}
_PLAIN = (bool, str, int, float)  # exactly these: an IntEnum or a str subclass is tagged


def register_enum(cls: type[enum.Enum]) -> None:
    """Let cached values hold members of ``cls`` (mapped classes' enums are known already)."""
    _ENUMS[_qualified(cls)] = cls


def encode(value: Any) -> str:
    """Return ``value`` as typed JSON, or raise :class:`UnserializableValue`."""
    return json.dumps(_encode(value), separators=(",", ":"))


def decode(text: str | bytes) -> Any:
    """Return the value that :func:`encode` turned into ``text``."""
    return json.loads(text, object_hook=_untag)


def encode_value(value: Any) -> Any:
    """Return ``value`` as a structure of JSON types (see :func:`encode`)."""
    return _encode(value)


_NUL = "\x00"


def _tag(name: str, payload: Any) -> dict[str, Any]:
    return {_NUL + name: payload}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    ((key, payload),) = obj.items()
    if key[:1] != _NUL:
        return obj
    decoder = _DECODERS.get(key[1:])
    if decoder is None:
        raise ValueError(f"unknown tag {key[1:]!r} in a cached value")
    return decoder(payload)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _tz(tzinfo: dt.tzinfo | None) -> Any:
    if tzinfo is None:
        return None
    if isinstance(tzinfo, ZoneInfo):
        return tzinfo.key
    if isinstance(tzinfo, dt.timezone):
        offset = tzinfo.utcoffset(None)
        return [offset.days * 86400 + offset.seconds, offset.microseconds]
    raise UnserializableValue(
        f"the cache cannot store a time zone of type {type(tzinfo).__name__}",
        hint="Use zoneinfo or datetime.timezone time zones, or leave the query uncached.",
    )


def _untz(payload: Any) -> dt.tzinfo | None:
    if payload is None:
        return None
    if isinstance(payload, str):
        return ZoneInfo(payload)
    return dt.timezone(dt.timedelta(seconds=payload[0], microseconds=payload[1]))


def _naive(value: dt.datetime | dt.time) -> str:
    return value.replace(tzinfo=None).isoformat()


def _encode(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        return value
    if type(value) is Ref:
        return _tag("ref", int(value))
    if isinstance(value, list) and not isinstance(value, MultiRange):
        return [_encode(item) for item in value]
    if type(value) is dict and all(type(k) is str and k[:1] != _NUL for k in value):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, dict):
        return _tag("map", [[_encode(k), _encode(v)] for k, v in value.items()])
    if isinstance(value, enum.Enum):
        register_enum(type(value))
        return _tag("enum", [_qualified(type(value)), value.name])
    if isinstance(value, Decimal):
        return _tag("dec", str(value))
    if isinstance(value, dt.datetime):
        return _tag("ts", [_naive(value), _tz(value.tzinfo), value.fold])
    if isinstance(value, dt.date):
        return _tag("date", value.isoformat())
    if isinstance(value, dt.time):
        return _tag("time", [_naive(value), _tz(value.tzinfo), value.fold])
    if isinstance(value, dt.timedelta):
        return _tag("iv", [value.days, value.seconds, value.microseconds])
    if isinstance(value, uuid.UUID):
        return _tag("uuid", value.hex)
    if isinstance(value, bytes | bytearray | memoryview):
        tag = "bytes" if isinstance(value, bytes) else type(value).__name__
        return _tag(tag, base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, tuple):
        return _tag("tuple", [_encode(item) for item in value])
    if isinstance(value, Range):
        return _tag("range", _range(value))
    if isinstance(value, MultiRange):
        return _tag("mrange", [_range(item) for item in value])
    if isinstance(value, PgRange):
        return {
            _NUL + "pgrange": [_encode(value.lower), _encode(value.upper), value.bounds]
            if not value.isempty
            else None,
        }
    if isinstance(value, PgMultirange):
        return _tag("pgmrange", [_encode(item) for item in value])
    if type(value) in _IP_TAGS:
        return _tag(_IP_TAGS[type(value)], str(value))
    raise UnserializableValue(
        f"the cache cannot store a value of type {type(value).__module__}."
        f"{type(value).__qualname__}",
        hint="Leave this query uncached, or select the column cast to a type the cache "
        "stores (text, numeric, json); see docs/cache.md for the types it keeps.",
    )


def _range(value: Range[Any]) -> list[Any]:
    return [_encode(value.lower), _encode(value.upper), value.bounds, value.empty]


def _unrange(payload: Sequence[Any]) -> Range[Any]:
    lower, upper, bounds, empty = payload
    return Range(lower, upper, bounds=bounds, empty=empty)


def _enum(payload: Sequence[str]) -> enum.Enum:
    name, member = payload
    cls = _ENUMS.get(name) or _mapped_enums().get(name)
    if cls is None:
        raise ValueError(f"enum {name} is not known to this process")
    return cls[member]


def _mapped_enums() -> dict[str, type[enum.Enum]]:
    """Register the enum classes of every mapped column, found when first needed."""
    from sqlalchemy import Enum as EnumType
    from sqlalchemy.orm import mapperlib

    for registry in list(mapperlib._mapper_registries):
        for mapper in registry.mappers:
            for column in mapper.columns:
                enum_class = getattr(column.type, "enum_class", None)
                if isinstance(column.type, EnumType) and enum_class is not None:
                    register_enum(enum_class)
    return _ENUMS


def _datetime(payload: Sequence[Any]) -> dt.datetime:
    text, tz, fold = payload
    return dt.datetime.fromisoformat(text).replace(tzinfo=_untz(tz), fold=fold)


def _time(payload: Sequence[Any]) -> dt.time:
    text, tz, fold = payload
    return dt.time.fromisoformat(text).replace(tzinfo=_untz(tz), fold=fold)


def _pairs(payload: Iterable[Sequence[Any]]) -> dict[Any, Any]:
    return {_hashable(k): v for k, v in payload}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "map": _pairs,
    "ref": Ref,
    "enum": _enum,
    "dec": Decimal,
    "ts": _datetime,
    "date": dt.date.fromisoformat,
    "time": _time,
    "iv": lambda p: dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2]),
    "uuid": lambda p: uuid.UUID(hex=p),
    "bytes": base64.b64decode,
    "bytearray": lambda p: bytearray(base64.b64decode(p)),
    "memoryview": lambda p: memoryview(base64.b64decode(p)),
    "tuple": tuple,
    "range": _unrange,
    "pgrange": lambda p: PgRange(empty=True) if p is None else PgRange(p[0], p[1], p[2]),
    "pgmrange": PgMultirange,
    "mrange": lambda p: MultiRange(_unrange(item) for item in p),
    **_IP_TYPES,
}
