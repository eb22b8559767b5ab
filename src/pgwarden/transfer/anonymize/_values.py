"""The value functions behind transforms, and what the keyed ones share.

Every keyed function derives what it does to a value from a keyed digest of ``namespace
NUL value``: the same value gives the same result in every table, every process and
every run with the same salt, so joins still match, and nobody without the salt can
recompute it. ``noise`` here, and ``hash`` (hex and UUID; :mod:`._hashes`), use
``HMAC-SHA256(salt, namespace NUL value)`` (:class:`Mac`); integer keys go through a
keyed permutation (:mod:`._hashes`); fakes pick from the Faker locale's own lists with
a keyed PRF on AES (:mod:`._fakes`, :mod:`._prf`). Values arrive as COPY text
(``str``) or as JSONL values (``int``, ``Decimal``, ``bool``, ...); each function
returns the same kind it was given, and ``None`` for ``None``.

The export's hot loop uses :func:`copy_column_function`: a chain of functions as one
function of a column's raw COPY text fields (a list of bytes, escaped, ``\\N`` for NULL)
giving the new fields. The keyed kinds, ``null``, ``constant`` and ``mask`` rewrite such
fields without decoding them (unless they hold escapes), fakes and integer hashes a
whole column at a time; any other function gets the decoded value, as on the import
side, and the result is the same bytes either way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pgwarden.transfer.copytext import format_copy_field, parse_copy_field

__all__ = [
    "NULL",
    "ColumnFunction",
    "Constant",
    "CopyFieldFunction",
    "FieldFunction",
    "Mac",
    "Null",
    "Truncate",
    "ValueFunction",
    "as_text",
    "copy_column_function",
    "digest",
    "mask",
    "noise",
    "normalize_email",
    "normalize_phone",
    "raw_value",
    "reformat_date",
]

ValueFunction = Callable[[Any], Any]
FieldFunction = Callable[[bytes], bytes]
ColumnFunction = Callable[[list[bytes]], list[bytes]]

NULL = b"\\N"


class CopyFieldFunction(ABC):
    """A value function that can also rewrite a raw COPY text field, bytes in, bytes out."""

    @abstractmethod
    def __call__(self, value: Any) -> Any:
        """Return the transformed value (COPY text or JSONL value; ``None`` for NULL)."""

    @abstractmethod
    def copy_field(self, field: bytes) -> bytes:
        """Return the transformed field: ``field`` and result escaped, ``\\N`` for NULL."""

    def field_function(self) -> FieldFunction:
        """Return :meth:`copy_field`, or an equivalent function with less overhead a call."""
        return self.copy_field

    def column_function(self) -> ColumnFunction:
        """Return a function giving :meth:`copy_field` of every field in a list, in order."""
        field = self.field_function()
        return lambda fields: list(map(field, fields))


class Null(CopyFieldFunction):
    """Every value becomes NULL."""

    def __call__(self, value: Any) -> Any:
        return None

    def copy_field(self, field: bytes) -> bytes:
        return NULL


class Constant(CopyFieldFunction):
    """Every non-NULL value becomes ``value``; NULL stays NULL."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.field = NULL if value is None else format_copy_field(as_text(value))

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.value

    def copy_field(self, field: bytes) -> bytes:
        return NULL if field == NULL else self.field


class Truncate(CopyFieldFunction):
    """Text longer than ``limit`` characters is cut to fit the column."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, value: Any) -> Any:
        return value[: self.limit] if isinstance(value, str) else value

    def copy_field(self, field: bytes) -> bytes:
        # An escaped field is at least as long in bytes as its value is in characters.
        if len(field) <= self.limit:
            return field
        return format_copy_field(self(parse_copy_field(field)))


def copy_column_function(functions: Sequence[ValueFunction]) -> ColumnFunction:
    """Return ``functions``, applied in order, as one function of a column's COPY text fields.

    It takes a list of raw fields and returns the new ones: exactly what decoding each
    field, applying each function and encoding the result gives, only faster where the
    functions know how.
    """
    if len(functions) == 1 and isinstance(functions[0], CopyFieldFunction):
        return functions[0].column_function()
    if (
        len(functions) == 2
        and isinstance(functions[0], CopyFieldFunction)
        and isinstance(functions[1], Truncate)
    ):
        first, cut = functions[0].column_function(), functions[1].copy_field
        return lambda fields: list(map(cut, first(fields)))

    def chain(field: bytes) -> bytes:
        value = parse_copy_field(field)
        for function in functions:
            value = function(value)
        return format_copy_field(
            value if value is None or isinstance(value, str) else as_text(value)
        )

    return lambda fields: list(map(chain, fields))


def digest(salt: bytes, namespace: str, value: Any) -> bytes:
    """Return ``HMAC-SHA256(salt, namespace NUL value)`` over the value's text."""
    message = namespace.encode() + b"\0" + as_text(value).encode()
    return hmac.digest(salt, message, "sha256")


class Mac:
    """``HMAC-SHA256(salt, namespace NUL data)`` with the keyed states computed once.

    The same bytes as :func:`digest`, in half the time of ``hmac.digest``.
    """

    def __init__(self, salt: bytes, namespace: str) -> None:
        key = hashlib.sha256(salt).digest() if len(salt) > 64 else salt
        key = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self.inner.update(namespace.encode() + b"\0")
        self.outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def __call__(self, data: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(data)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unit(mac: Mac, value: Any) -> float:
    """Return a number in [-1, 1) fixed by the value."""
    return int.from_bytes(mac(as_text(value).encode())[:8], "big") / 2**63 - 1.0


def raw_value(field: bytes) -> bytes:
    """Return the value's UTF-8 bytes of a non-NULL COPY field (escapes resolved)."""
    if b"\\" not in field:
        return field
    return (parse_copy_field(field) or "").encode()


# Plain functions --------------------------------------------------------------------------


def mask(keep: int, char: str) -> ValueFunction:
    """Return a function replacing all but the last ``keep`` characters with ``char``."""
    return _Mask(keep, char)


class _Mask(CopyFieldFunction):
    def __init__(self, keep: int, char: str) -> None:
        self.keep = keep
        self.char = char
        self.char_field = format_copy_field(char)

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        text = as_text(value)
        shown = text[-self.keep :] if self.keep > 0 else ""
        return self.char * (len(text) - len(shown)) + shown

    def copy_field(self, field: bytes) -> bytes:
        if field == NULL:
            return field
        if field.isascii() and b"\\" not in field:  # a byte a character, no escapes
            shown = field[-self.keep :] if self.keep > 0 else b""
            return self.char_field * (len(field) - len(shown)) + shown
        return format_copy_field(self(parse_copy_field(field)))

    def column_function(self) -> ColumnFunction:
        # ASCII fields with no escapes, a one-byte mask character: one numpy array of
        # the column, its masked bytes set at once. Anything else goes value by value.
        if len(self.char_field) != 1:
            return super().column_function()
        import numpy as np  # the anonymize extra; compile_transforms checked it is there

        field, keep, char = self.copy_field, self.keep, self.char_field[0]

        def column(fields: list[bytes]) -> list[bytes]:
            joined = b"".join(fields)
            nulls = fields.count(NULL) if b"\\" in joined else 0
            if not fields or not joined.isascii() or joined.count(b"\\") != nulls:
                return list(map(field, fields))
            values = np.array(fields, dtype="S")  # zero-padded: no field holds a NUL byte
            width = values.dtype.itemsize
            matrix = values.view(np.uint8).reshape(-1, width).copy()
            lengths = np.fromiter(map(len, fields), dtype=np.intp, count=len(fields))
            matrix[np.arange(width) < (lengths - keep)[:, None]] = char
            out: list[bytes] = matrix.view(f"S{width}").ravel().tolist()
            if nulls:
                for index in [i for i, value in enumerate(fields) if value == NULL]:
                    out[index] = NULL
            return out

        return column


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
    mac = Mac(salt, namespace)

    def one(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        shift = _unit(mac, value)
        if temporal:
            return _shift_date(value, shift * (30.0 if days is None else days))
        return _shift_number(value, shift, ratio=ratio, amount=amount)

    return one


def _shift_number(value: Any, shift: float, *, ratio: float | None, amount: float | None) -> Any:
    try:
        number = Decimal(as_text(value))
    except InvalidOperation:
        return value
    if not number.is_finite():
        return value
    delta = Decimal(shift) * (
        Decimal(str(amount)) if amount is not None else abs(number) * Decimal(str(ratio or 0.1))
    )
    moved = number + delta
    text = as_text(value)
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
    text = as_text(value)
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
    return None if value is None else as_text(value).strip().lower()


def normalize_phone(country_code: str | None) -> ValueFunction:
    """Return a function writing phone numbers as ``+`` and digits (E.164 style).

    A number without a leading ``+`` or ``00`` gets ``country_code`` (digits) in front,
    its leading zeros dropped; without one, it keeps only its digits.
    """

    def one(value: Any) -> Any:
        if value is None:
            return None
        text = as_text(value).strip()
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
            moment = datetime.fromisoformat(as_text(value))
        except ValueError:
            return value
        return (moment.date() if len(as_text(value)) == 10 else moment).strftime(pattern)

    return one
