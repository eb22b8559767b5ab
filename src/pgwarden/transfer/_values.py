"""The value functions behind transforms: deterministic fakes, keyed hashes, noise, masks.

Every keyed function derives what it does to a value from ``HMAC-SHA256(salt, namespace
NUL value)``: the same value gives the same result in every table and every run with the
same salt, so joins still match, and nobody without the salt can recompute it. Values
arrive as COPY text (``str``) or as JSONL values (``int``, ``Decimal``, ``bool``, ...);
each function returns the same kind it was given, and ``None`` for ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from faker import Faker

from pgwarden.errors import UserError

__all__ = [
    "ValueFunction",
    "digest",
    "fake",
    "fake_email",
    "keyed_hash",
    "mask",
    "noise",
    "normalize_email",
    "normalize_phone",
    "reformat_date",
]

ValueFunction = Callable[[Any], Any]

_INTEGER_BITS = {"smallint": 15, "integer": 31, "bigint": 63}
_CACHE = 1 << 16


def digest(salt: bytes, namespace: str, value: Any) -> bytes:
    """Return ``HMAC-SHA256(salt, namespace NUL value)`` over the value's text."""
    message = namespace.encode() + b"\0" + _text(value).encode()
    return hmac.digest(salt, message, "sha256")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unit(salt: bytes, namespace: str, value: Any) -> float:
    """Return a number in [-1, 1) fixed by the value."""
    return int.from_bytes(digest(salt, namespace, value)[:8], "big") / 2**63 - 1.0


def fake(salt: bytes, namespace: str, provider: str, locale: str | None) -> ValueFunction:
    """Return a function giving a Faker ``provider`` value seeded by the input's HMAC."""
    generator = Faker(locale) if locale else Faker()
    if provider.startswith("_") or not callable(getattr(generator, provider, None)):
        raise UserError(
            f"Faker has no provider {provider!r}.",
            hint="Name a Faker method that takes no arguments: name, email, phone_number, "
            "address, company, user_name, city, url, ipv4, sentence.",
        )
    method = getattr(generator, provider)

    @lru_cache(maxsize=_CACHE)
    def one(text: str) -> str:
        generator.seed_instance(int.from_bytes(digest(salt, namespace, text)[:8], "big"))
        return str(method())

    return lambda value: None if value is None else one(_text(value))


def fake_email(salt: bytes, namespace: str) -> ValueFunction:
    """Return a function giving a fake e-mail on a reserved domain, unique per input.

    ``user.name.1f2e3d4c@example.org``: the hex part (32 bits of the HMAC) keeps two
    inputs from meeting on one address, so a unique column stays unique.
    """
    generator = Faker()
    domains = ("example.com", "example.net", "example.org")

    @lru_cache(maxsize=_CACHE)
    def one(text: str) -> str:
        mac = digest(salt, namespace, text)
        generator.seed_instance(int.from_bytes(mac[:8], "big"))
        return f"{generator.user_name()}.{mac[8:12].hex()}@{domains[mac[12] % 3]}"

    return lambda value: None if value is None else one(_text(value))


def keyed_hash(salt: bytes, namespace: str, column_type: str, length: int | None) -> ValueFunction:
    """Return a keyed hash fitting the column: hex text, a UUID, or a permuted integer.

    Integers go through a keyed permutation (a Feistel network over the type's range),
    so distinct keys stay distinct and foreign keys hashed the same way still match.
    """
    if column_type in _INTEGER_BITS:
        permute = _permutation(salt, namespace, _INTEGER_BITS[column_type])

        def integer(value: Any) -> Any:
            if value is None:
                return None
            number = int(value)
            result = permute(abs(number)) * (-1 if number < 0 else 1)
            return str(result) if isinstance(value, str) else result

        return integer
    if column_type == "uuid":
        return lambda value: (
            None if value is None else str(uuid.UUID(bytes=digest(salt, namespace, value)[:16]))
        )
    size = length or 64
    return lambda value: None if value is None else digest(salt, namespace, value).hex()[:size]


def _permutation(salt: bytes, namespace: str, bits: int) -> Callable[[int], int]:
    """Return a keyed bijection of ``[0, 2**bits)``: a Feistel network with cycle walking."""
    half = (bits + 1) // 2
    mask = (1 << half) - 1
    key = hmac.digest(salt, b"permute\0" + namespace.encode(), "sha256")
    limit = 1 << bits
    # The round function only has to be a keyed PRF: keyed BLAKE2b is one, and fast.
    keys = [hashlib.blake2b(bytes([index]), key=key, digest_size=32).digest() for index in range(4)]

    def rounds(number: int) -> int:
        left, right = number >> half, number & mask
        for round_key in keys:
            mac = hashlib.blake2b(right.to_bytes(8, "big"), key=round_key, digest_size=8)
            left, right = right, left ^ (int.from_bytes(mac.digest(), "big") & mask)
        return (left << half) | right

    @lru_cache(maxsize=_CACHE)
    def permute(number: int) -> int:
        if number >= limit:
            raise UserError(f"{number} is out of range for a {bits + 1}-bit integer hash.")
        number = rounds(number)
        while number >= limit:  # the network spans 2*half bits; walk back into range
            number = rounds(number)
        return number

    return permute


def mask(keep: int, char: str) -> ValueFunction:
    """Return a function replacing all but the last ``keep`` characters with ``char``."""

    def one(value: Any) -> Any:
        if value is None:
            return None
        text = _text(value)
        shown = text[-keep:] if keep > 0 else ""
        return char * (len(text) - len(shown)) + shown

    return one


def noise(
    salt: bytes,
    namespace: str,
    column_type: str,
    *,
    ratio: float | None,
    amount: float | None,
    days: float | None,
) -> ValueFunction:
    """Return a function moving numbers and dates by a bounded amount fixed by the value.

    Numbers move by up to ``amount``, else ``ratio`` of themselves (default 10%); dates
    and timestamps by up to ``days`` (default 30). Integers stay integers and decimals
    keep their number of digits after the point; infinities and unreadable text pass.
    """
    temporal = column_type == "date" or column_type.startswith(("timestamp", "time "))

    def one(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        shift = _unit(salt, namespace, value)
        if temporal:
            return _shift_date(value, shift * (30.0 if days is None else days))
        return _shift_number(value, shift, ratio=ratio, amount=amount)

    return one


def _shift_number(value: Any, shift: float, *, ratio: float | None, amount: float | None) -> Any:
    try:
        number = Decimal(_text(value))
    except InvalidOperation:
        return value
    if not number.is_finite():
        return value
    delta = Decimal(shift) * (
        Decimal(str(amount)) if amount is not None else abs(number) * Decimal(str(ratio or 0.1))
    )
    moved = number + delta
    text = _text(value)
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", text)):
        result = int(moved.to_integral_value())
        return str(result) if isinstance(value, str) else result
    exponent = number.as_tuple().exponent
    places = Decimal(1).scaleb(exponent) if isinstance(exponent, int) else Decimal(1)
    rounded = moved.quantize(places)
    if isinstance(value, str):
        return str(rounded)
    return float(rounded) if isinstance(value, float) else rounded


def _shift_date(value: Any, days: float) -> Any:
    text = _text(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return value  # infinity, BC dates, times without a date
    if len(text) == 10:
        return (moment.date() + timedelta(days=round(days))).isoformat()
    return _postgres_timestamp(moment + timedelta(seconds=round(days * 86400)))


def _postgres_timestamp(moment: datetime) -> str:
    """Return ``moment`` as PostgreSQL prints it with DateStyle ISO."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        hours, rest = divmod(abs(minutes), 60)
        text += f"{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")
    return text


def normalize_email(value: Any) -> Any:
    """Return an e-mail address trimmed and in lower case."""
    return None if value is None else _text(value).strip().lower()


def normalize_phone(country_code: str | None) -> ValueFunction:
    """Return a function writing phone numbers as ``+`` and digits (E.164 style).

    A number without a leading ``+`` or ``00`` gets ``country_code`` (digits) in front,
    its leading zeros dropped; without one, it keeps only its digits.
    """

    def one(value: Any) -> Any:
        if value is None:
            return None
        text = _text(value).strip()
        digits = re.sub(r"\D", "", text)
        if text.startswith("+"):
            return f"+{digits}"
        if text.startswith("00"):
            return f"+{digits[2:]}"
        if country_code:
            return f"+{country_code.lstrip('+')}{digits.lstrip('0')}"
        return digits

    return one


def reformat_date(pattern: str) -> ValueFunction:
    """Return a function rewriting dates and timestamps with the strftime ``pattern``."""

    def one(value: Any) -> Any:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(_text(value))
        except ValueError:
            return value
        return (moment.date() if len(_text(value)) == 10 else moment).strftime(pattern)

    return one
