"""The value functions behind transforms: deterministic fakes, keyed hashes, noise, masks.

Every keyed function derives what it does to a value from a keyed digest of ``namespace
NUL value``: the same value gives the same result in every table, every process and
every run with the same salt, so joins still match, and nobody without the salt can
recompute it. ``hash`` (hex and UUID) and ``noise`` use ``HMAC-SHA256(salt, namespace NUL
value)``; integer keys go through a keyed permutation (:class:`_Permutation`); fakes pick
from the Faker locale's own lists with keyed BLAKE2s (see :func:`fake`). Values arrive
as COPY text (``str``) or as JSONL values (``int``, ``Decimal``, ``bool``, ...); each
function returns the same kind it was given, and ``None`` for ``None``.

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
import struct
import uuid
from abc import ABC, abstractmethod
from binascii import hexlify
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

import numpy as np
from faker import Faker
from faker.utils.text import slugify

from pgwarden.errors import UserError
from pgwarden.transfer.copytext import format_copy_field, parse_copy_field

__all__ = [
    "ColumnFunction",
    "Constant",
    "CopyFieldFunction",
    "Null",
    "Truncate",
    "ValueFunction",
    "copy_column_function",
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
FieldFunction = Callable[[bytes], bytes]
ColumnFunction = Callable[[list[bytes]], list[bytes]]

_INTEGER_BITS = {"smallint": 15, "integer": 31, "bigint": 63}
# Results kept per function, for values that repeat (a foreign key, a denormalized e-mail).
# A plain dict emptied when full: a lookup costs less than an LRU's bookkeeping.
_CACHE = 1 << 17
_NULL = b"\\N"
_EMAIL_DOMAINS = (b"@example.com", b"@example.net", b"@example.org")


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
        return _NULL


class Constant(CopyFieldFunction):
    """Every non-NULL value becomes ``value``; NULL stays NULL."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.field = _NULL if value is None else format_copy_field(_text(value))

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.value

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else self.field


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
        return format_copy_field(value if value is None or isinstance(value, str) else _text(value))

    return lambda fields: list(map(chain, fields))


def digest(salt: bytes, namespace: str, value: Any) -> bytes:
    """Return ``HMAC-SHA256(salt, namespace NUL value)`` over the value's text."""
    message = namespace.encode() + b"\0" + _text(value).encode()
    return hmac.digest(salt, message, "sha256")


class _Mac:
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


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unit(mac: _Mac, value: Any) -> float:
    """Return a number in [-1, 1) fixed by the value."""
    return int.from_bytes(mac(_text(value).encode())[:8], "big") / 2**63 - 1.0


def _raw(field: bytes) -> bytes:
    """Return the value's UTF-8 bytes of a non-NULL COPY field (escapes resolved)."""
    if b"\\" not in field:
        return field
    return (parse_copy_field(field) or "").encode()


# Fakes ----------------------------------------------------------------------------------


def fake(salt: bytes, namespace: str, provider: str, locale: str | None) -> ValueFunction:
    """Return a function giving a fake ``provider`` value (a Faker method) fixed by the input.

    ``name``, ``first_name``, ``last_name`` and ``user_name`` are built from the Faker
    locale's own formats and lists (uniform picks; formats by their weights), each part
    picked by 32 bits of a keyed BLAKE2s of the input (key: ``HMAC-SHA256(salt, "fake"
    NUL namespace)``): under a microsecond a value. Any other provider runs Faker itself
    seeded with ``HMAC-SHA256(salt, namespace NUL value)``: tens of microseconds a value,
    results kept for inputs that repeat. A locale whose lists a template cannot use
    (a token with no list) falls back to Faker too.
    """
    generator = _faker(locale)
    if provider.startswith("_") or not callable(getattr(generator, provider, None)):
        raise UserError(
            f"Faker has no provider {provider!r}.",
            hint="Name a Faker method that takes no arguments: name, email, phone_number, "
            "address, company, user_name, city, url, ipv4, sentence.",
        )
    template = _template(locale, provider)
    if template is not None:
        return _Fake(salt, namespace, template)
    return _SeededFake(salt, namespace, generator, provider)


def fake_email(salt: bytes, namespace: str) -> ValueFunction:
    """Return a function giving a fake e-mail on a reserved domain, unique per input.

    ``ashleypham.1f2e3d4c@example.org``: a Faker-style user name, then 32 bits of the
    digest in hex, which keep two inputs from meeting on one address, so a unique
    column stays unique.
    """
    template = _template(None, "user_name")
    assert template is not None, "the default locale has user names"
    return _Fake(salt, namespace, template, email=True)


class _Fake(CopyFieldFunction):
    """A fake from a template, picked by the keyed BLAKE2s (32 bytes) of the input's bytes.

    An e-mail is the template's user name, ``.``, bytes 20 to 23 of the digest in hex,
    and one of the reserved domains by byte 24 (see :class:`_Template` for the rest).
    """

    def __init__(
        self, salt: bytes, namespace: str, template: _Template, *, email: bool = False
    ) -> None:
        key = hmac.digest(salt, b"fake\0" + namespace.encode(), "sha256")
        self.state = hashlib.blake2s(key=key)
        self.template = template
        self.email = email

    def make(self, data: bytes) -> bytes:
        """Return the fake for a value's UTF-8 bytes."""
        state = self.state.copy()
        state.update(data)
        mac = state.digest()
        text = self.template.pick(mac)
        if self.email:
            return text + b"." + hexlify(mac[20:24]) + _EMAIL_DOMAINS[mac[24] % 3]
        return text

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.make(_text(value).encode()).decode()

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else self.make(_raw(field))

    def column_function(self) -> ColumnFunction:
        # What make() does, a column at a time, with no Python code run per value: the
        # keyed states are copied, fed and finished by C loops (map), and the digests
        # picked from in a few array operations. This runs a million times a table.
        copy, template, email = self.state.copy, self.template, self.email
        kind = type(self.state)
        update, digest = kind.update, kind.digest

        def column(fields: list[bytes]) -> list[bytes]:
            if not fields:
                return []
            nulls: list[int] = []
            if b"\\" in b"".join(fields):  # NULLs (\\N) or escapes
                nulls = [index for index, field in enumerate(fields) if field == _NULL]
                fields = [_raw(field) if b"\\" in field else field for field in fields]
            states = [copy() for _ in fields]
            deque(map(update, states, fields), maxlen=0)
            digests = np.frombuffer(b"".join(map(digest, states)), dtype=np.uint8)
            digests = digests.reshape(-1, 32)
            texts = template.pick_many(digests.view("<u4"))
            if email:
                hexes = np.frombuffer(digests[:, 20:24].tobytes().hex().encode(), dtype="S8")
                domains = _EMAIL_DOMAIN_ARRAY[digests[:, 24] % 3]
                texts = texts + b"." + hexes.astype(object) + domains
            out: list[bytes] = texts.tolist()
            for index in nulls:
                out[index] = _NULL
            return out

        return column


class _SeededFake(CopyFieldFunction):
    def __init__(self, salt: bytes, namespace: str, generator: Faker, provider: str) -> None:
        self.mac = _Mac(salt, namespace)
        self.generator = generator
        self.method = getattr(generator, provider)
        self.one = lru_cache(maxsize=1 << 16)(self._one)

    def _one(self, text: str) -> str:
        self.generator.seed_instance(int.from_bytes(self.mac(text.encode())[:8], "big"))
        return str(self.method())

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.one(_text(value))

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else format_copy_field(self(parse_copy_field(field)))


@cache
def _faker(locale: str | None) -> Faker:
    return Faker(locale) if locale else Faker()


class _Template:
    """Weighted formats, each a sequence of parts; a part is a tuple of choices.

    Literal text is folded into the choices of the part before it, so building a value
    is one pick per part. A value is picked by a 32-byte digest read as eight
    little-endian 32-bit words: the top 12 bits of word 7 choose the format (by weight),
    and part ``i`` takes choice ``word[i % 5] % len(choices)``.
    """

    def __init__(self, formats: list[tuple[float, list[tuple[bytes, ...]]]]) -> None:
        self.formats = [parts for _, parts in formats]
        total = sum(weight for weight, _ in formats)
        table: list[int] = []
        running = 0.0
        for number, (weight, _) in enumerate(formats):
            running += weight
            table += [number] * (round(running / total * 4096) - len(table))
        self.table = table
        self.table_array = np.array(table, dtype=np.intp)
        self.arrays = [[_object_array(choices) for choices in parts] for parts in self.formats]

    def pick(self, mac: bytes) -> bytes:
        """Return the value for one digest."""
        words = _WORDS.unpack_from(mac)
        parts = self.formats[self.table[words[7] >> 20]]
        return b"".join([choices[words[i % 5] % len(choices)] for i, choices in enumerate(parts)])

    def pick_many(self, words: Any) -> Any:
        """Return :meth:`pick` of every row of ``words`` (an array of 8 words a row), as
        an array of bytes objects."""
        out = np.empty(len(words), dtype=object)
        formats = self.table_array[words[:, 7] >> 20] if len(self.arrays) > 1 else None
        for number, parts in enumerate(self.arrays):
            rows = np.flatnonzero(formats == number) if formats is not None else slice(None)
            chosen = words[rows]
            if not len(chosen):
                continue
            texts = parts[0][chosen[:, 0] % len(parts[0])]
            for i, choices in enumerate(parts[1:], 1):
                texts = texts + choices[chosen[:, i % 5] % len(choices)]
            out[rows] = texts
        return out


def _object_array(items: Sequence[bytes]) -> Any:
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):  # one by one: no bytes read as a sequence
        array[index] = item
    return array


_WORDS = struct.Struct("<8I")
_EMAIL_DOMAIN_ARRAY = _object_array(_EMAIL_DOMAINS)


_TOKEN = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_FAST = ("name", "first_name", "last_name", "user_name")
_DIGITS = tuple("0123456789")  # Faker's bothify: # a digit, ? a letter (lowered)
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")


@cache
def _template(locale: str | None, provider: str) -> _Template | None:
    """Return the template for a provider built from a locale's lists, or ``None``."""
    if provider not in _FAST:
        return None
    generator = _faker(locale)
    person: Any = generator.name.__self__  # type: ignore[attr-defined]  # the provider
    clean: Callable[[str], str] = str
    if provider == "name":
        patterns = _weighted(getattr(person, "formats", ()))
    elif provider == "user_name":
        internet: Any = generator.user_name.__self__  # type: ignore[attr-defined]
        patterns = _weighted(getattr(internet, "user_name_formats", ()))

        def clean(text: str) -> str:  # what Faker does to a whole user name, part by part
            return str(slugify(internet._to_ascii(text.lower()), allow_unicode=True))

    else:
        patterns = [(1.0, "{{" + provider + "}}")]
    formats = []
    for weight, pattern in patterns:
        parts = _parts(pattern, person, clean, bothify=provider == "user_name")
        if parts:
            formats.append((weight, parts))
    return _Template(formats) if formats else None


def _weighted(items: Any) -> list[tuple[float, str]]:
    if isinstance(items, dict):
        return [(float(weight), str(pattern)) for pattern, weight in items.items() if weight > 0]
    return [(1.0, str(pattern)) for pattern in items]


def _parts(
    pattern: str, person: Any, clean: Callable[[str], str], *, bothify: bool
) -> list[tuple[bytes, ...]] | None:
    """Return a pattern's parts, or ``None`` when a token has no list or needs escaping."""
    pieces: list[tuple[str, ...]] = []
    literal = ""
    position = 0
    for match in [*_TOKEN.finditer(pattern), None]:
        text = pattern[position : match.start() if match else len(pattern)]
        for char in text:
            if bothify and char in "#?":
                if literal:
                    pieces.append((literal,))
                    literal = ""
                pieces.append(_DIGITS if char == "#" else _LETTERS)
            else:
                literal += char
        if match is None:
            break
        position = match.end()
        choices = _choices(person, match.group(1))
        if choices is None:
            return None
        if literal:
            pieces.append((literal,))
            literal = ""
        pieces.append(choices)
    if literal:
        pieces.append((literal,))
    # Fold each literal into the part before it, and runs of # and ? into one part (100
    # choices for ##): one pick per part when building.
    folded: list[tuple[str, ...]] = []
    random_chars = False  # whether the last folded part is # and ? alone
    for piece in pieces:
        chars = piece is _DIGITS or piece is _LETTERS
        if folded and (
            len(piece) == 1 or (chars and random_chars and len(folded[-1]) * len(piece) <= 10**4)
        ):
            folded[-1] = tuple(before + after for before in folded[-1] for after in piece)
        else:
            folded.append(piece)
            random_chars = chars
    out = [tuple(clean(choice).encode() for choice in piece) for piece in folded]
    if any(set(b"\\\t\n\r") & set(choice) for piece in out for choice in piece):
        return None  # would need COPY escapes: leave it to Faker
    return [piece for piece in out if piece != (b"",)]


def _choices(person: Any, token: str) -> tuple[str, ...] | None:
    """Return the list a name token draws from (``first_name_male``: ``first_names_male``)."""
    for attribute in (
        token.replace("name", "names", 1),
        token.replace("prefix", "prefixes", 1),
        token.replace("suffix", "suffixes", 1),
        token + "s",
    ):
        values = getattr(person, attribute, None) if attribute != token else None
        if isinstance(values, dict | list | tuple) and values:
            choices = tuple(str(value) for value in values if str(value))
            if choices:
                return choices
    return None


# Keyed hashes -----------------------------------------------------------------------------


def keyed_hash(salt: bytes, namespace: str, column_type: str, length: int | None) -> ValueFunction:
    """Return a keyed hash fitting the column: hex text, a UUID, or a permuted integer.

    Integers go through a keyed permutation (a Feistel network over the type's range),
    so distinct keys stay distinct and foreign keys hashed the same way still match.
    """
    if column_type in _INTEGER_BITS:
        return _IntegerHash(_permutation(salt, namespace, _INTEGER_BITS[column_type]))
    return _TextHash(_Mac(salt, namespace), uuid=column_type == "uuid", size=length or 64)


class _IntegerHash(CopyFieldFunction):
    def __init__(self, permute: _Permutation) -> None:
        self.permute = permute

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        number = int(value)
        result = self.permute(abs(number)) * (-1 if number < 0 else 1)
        return str(result) if isinstance(value, str) else result

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else str(self(int(field))).encode()

    def field_function(self) -> FieldFunction:
        permute = self.permute

        def field(data: bytes) -> bytes:
            if data == _NULL:
                return data
            number = int(data)
            return str(permute(number) if number >= 0 else -permute(-number)).encode()

        return field

    def column_function(self) -> ColumnFunction:
        # Keys repeat (a foreign key, and the key it references): the fields already
        # seen are looked up, by C loops, in a cache the permutation keeps.
        field = self.field_function()
        cache = self.permute.fields

        def column(fields: list[bytes]) -> list[bytes]:
            with suppress(KeyError):  # most often every field is there
                return list(map(cache.__getitem__, fields))
            missing = set(fields).difference(cache)
            if len(cache) + len(missing) > _CACHE:
                cache.clear()
                missing = set(fields)
            cache.update(zip(missing, map(field, missing), strict=True))
            return list(map(cache.__getitem__, fields))

        return column


class _TextHash(CopyFieldFunction):
    def __init__(self, mac: _Mac, *, uuid: bool, size: int) -> None:
        self.mac = mac
        self.uuid = uuid
        self.size = size

    def make(self, data: bytes) -> str:
        mac = self.mac(data)
        return str(uuid.UUID(bytes=mac[:16])) if self.uuid else mac.hex()[: self.size]

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.make(_text(value).encode())

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else self.make(_raw(field)).encode()

    def field_function(self) -> FieldFunction:
        make = self.make
        return lambda data: data if data == _NULL else make(_raw(data)).encode()


@cache
def _permutation(salt: bytes, namespace: str, bits: int) -> _Permutation:
    """Return the keyed bijection of ``[0, 2**bits)`` for a salt and namespace.

    Shared by every column hashed with the same salt and namespace (one cache for a key
    and its references).
    """
    return _Permutation(salt, namespace, bits)


class _Permutation:
    """A keyed bijection of ``[0, 2**bits)``: an unbalanced Feistel network.

    The halves have ``bits // 2`` and ``bits - bits // 2`` bits and trade places every
    round, so four rounds map the range onto itself exactly. Results are kept in
    :attr:`cache` (emptied when full), since keys repeat.
    """

    def __init__(self, salt: bytes, namespace: str, bits: int) -> None:
        key = hmac.digest(salt, b"permute\0" + namespace.encode(), "sha256")
        self.bits = bits
        self.low = bits // 2
        self.high = bits - self.low
        # The round function only has to be a keyed PRF: keyed BLAKE2b is one, and fast.
        self.states = [
            hashlib.blake2b(key=hashlib.blake2b(bytes([index]), key=key).digest(), digest_size=8)
            for index in range(4)
        ]
        self.cache: dict[int, int] = {}
        self.fields: dict[bytes, bytes] = {}  # COPY fields in and out, for column functions

    def __call__(self, number: int) -> int:
        result = self.cache.get(number)
        if result is not None:
            return result
        if number >= 1 << self.bits:
            raise UserError(f"{number} is out of range for a {self.bits + 1}-bit integer hash.")
        left, right = number >> self.low, number & ((1 << self.low) - 1)
        left_bits, right_bits = self.high, self.low
        for state in self.states:
            mac = state.copy()
            mac.update(right.to_bytes(8, "big"))
            mixed = left ^ (int.from_bytes(mac.digest(), "big") & ((1 << left_bits) - 1))
            left, right = right, mixed
            left_bits, right_bits = right_bits, left_bits
        result = (left << right_bits) | right
        if len(self.cache) >= _CACHE:
            self.cache.clear()
        self.cache[number] = result
        return result


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
        text = _text(value)
        shown = text[-self.keep :] if self.keep > 0 else ""
        return self.char * (len(text) - len(shown)) + shown

    def copy_field(self, field: bytes) -> bytes:
        if field == _NULL:
            return field
        if field.isascii() and b"\\" not in field:  # a byte a character, no escapes
            shown = field[-self.keep :] if self.keep > 0 else b""
            return self.char_field * (len(field) - len(shown)) + shown
        return format_copy_field(self(parse_copy_field(field)))


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
    mac = _Mac(salt, namespace)

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
