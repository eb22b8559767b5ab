"""The value functions behind transforms: deterministic fakes, keyed hashes, noise, masks.

Every keyed function derives what it does to a value from a keyed digest of ``namespace
NUL value``: the same value gives the same result in every table, every process and
every run with the same salt, so joins still match, and nobody without the salt can
recompute it. ``hash`` (hex and UUID) and ``noise`` use ``HMAC-SHA256(salt, namespace NUL
value)``; integer keys go through a keyed permutation (:func:`_permutation`); fakes pick
from the Faker locale's own lists with keyed BLAKE2s (see :func:`fake`). Values arrive
as COPY text (``str``) or as JSONL values (``int``, ``Decimal``, ``bool``, ...); each
function returns the same kind it was given, and ``None`` for ``None``.

The export's hot loop uses :func:`copy_field_function`: a chain of functions as one
function of a raw COPY text field (bytes, escaped, ``\\N`` for NULL). The keyed kinds,
``null``, ``constant`` and ``mask`` rewrite such a field without decoding it (unless it
holds escapes); any other function gets the decoded value, as on the import side, and
the result is the same bytes either way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from abc import ABC, abstractmethod
from binascii import hexlify
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from faker import Faker
from faker.utils.text import slugify

from pgwarden.errors import UserError
from pgwarden.transfer.copytext import format_copy_field, parse_copy_field

__all__ = [
    "Constant",
    "CopyFieldFunction",
    "Null",
    "Truncate",
    "ValueFunction",
    "copy_field_function",
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


def copy_field_function(functions: Sequence[ValueFunction]) -> FieldFunction:
    """Return ``functions``, applied in order, as one function of a raw COPY text field.

    Gives exactly what decoding the field, applying each function and encoding the
    result gives, only faster where the functions know how.
    """
    if len(functions) == 1 and isinstance(functions[0], CopyFieldFunction):
        return functions[0].field_function()
    if (
        len(functions) == 2
        and isinstance(functions[0], CopyFieldFunction)
        and isinstance(functions[1], Truncate)
    ):
        first, cut = functions[0].field_function(), functions[1].copy_field
        return lambda field: cut(first(field))

    def chain(field: bytes) -> bytes:
        value = parse_copy_field(field)
        for function in functions:
            value = function(value)
        return format_copy_field(value if value is None or isinstance(value, str) else _text(value))

    return chain


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
    def __init__(
        self, salt: bytes, namespace: str, template: _Template, *, email: bool = False
    ) -> None:
        key = hmac.digest(salt, b"fake\0" + namespace.encode(), "sha256")
        self.state = hashlib.blake2s(key=key)
        self.pick = template.pick
        self.table = template.table
        self.email = email

    def make(self, data: bytes) -> bytes:
        """Return the fake for a value's UTF-8 bytes: 256 bits of keyed BLAKE2s pick it."""
        state = self.state.copy()
        state.update(data)
        mac = state.digest()
        text = self.pick(int.from_bytes(mac, "little"))
        if self.email:  # parts use the low 160 bits or so, the format the top 12
            return text + b"." + hexlify(mac[20:24]) + _EMAIL_DOMAINS[mac[24] % 3]
        return text

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.make(_text(value).encode()).decode()

    def copy_field(self, field: bytes) -> bytes:
        return _NULL if field == _NULL else self.make(_raw(field))

    def field_function(self) -> FieldFunction:
        # make() inlined: this runs once a value, a million times a table.
        copy, table, email, from_bytes = self.state.copy, self.table, self.email, int.from_bytes
        domains = _EMAIL_DOMAINS

        def field(data: bytes) -> bytes:
            if b"\\" in data:  # NULL (\\N) or escapes
                if data == _NULL:
                    return data
                data = _raw(data)
            state = copy()
            state.update(data)
            mac = state.digest()
            number = from_bytes(mac, "little")
            text = table[number >> 244](number)
            if email:
                return text + b"." + hexlify(mac[20:24]) + domains[mac[24] % 3]
            return text

        return field


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
    is one pick per part. :meth:`pick` takes a 256-bit number: its top 12 bits choose
    the format (by weight), its lowest 32-bit windows the part choices.
    """

    def __init__(self, formats: list[tuple[float, list[tuple[bytes, ...]]]]) -> None:
        makers = [_maker(parts) for _, parts in formats]
        total = sum(weight for weight, _ in formats)
        table: list[Callable[[int], bytes]] = []
        running = 0.0
        for (weight, _), maker in zip(formats, makers, strict=True):
            running += weight
            table += [maker] * (round(running / total * 4096) - len(table))
        self.table = table

    def pick(self, number: int) -> bytes:
        return self.table[number >> 244](number)


def _maker(parts: list[tuple[bytes, ...]]) -> Callable[[int], bytes]:
    """Return a function building one format's value from a number, one window a part."""
    if len(parts) == 1:
        (a,) = parts
        return lambda n: a[n % len(a)]
    if len(parts) == 2:
        a, b = parts
        return lambda n: a[n % len(a)] + b[(n >> 32) % len(b)]
    if len(parts) == 3:
        a, b, c = parts
        return lambda n: a[n % len(a)] + b[(n >> 32) % len(b)] + c[(n >> 64) % len(c)]
    return lambda n: b"".join(
        choices[(n >> (32 * (i % 5))) % len(choices)] for i, choices in enumerate(parts)
    )


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
    def __init__(self, permute: Callable[[int], int]) -> None:
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
def _permutation(salt: bytes, namespace: str, bits: int) -> Callable[[int], int]:
    """Return a keyed bijection of ``[0, 2**bits)``: an unbalanced Feistel network.

    The halves have ``bits // 2`` and ``bits - bits // 2`` bits and trade places every
    round, so four rounds map the range onto itself exactly. Shared by every column
    hashed with the same salt and namespace (one cache for a key and its references).
    """
    key = hmac.digest(salt, b"permute\0" + namespace.encode(), "sha256")
    low = bits // 2
    high = bits - low
    limit = 1 << bits
    # The round function only has to be a keyed PRF: keyed BLAKE2b is one, and fast.
    states = [
        hashlib.blake2b(key=hashlib.blake2b(bytes([index]), key=key).digest(), digest_size=8)
        for index in range(4)
    ]
    cache: dict[int, int] = {}

    def permute(number: int) -> int:
        result = cache.get(number)
        if result is not None:
            return result
        if number >= limit:
            raise UserError(f"{number} is out of range for a {bits + 1}-bit integer hash.")
        left, right = number >> low, number & ((1 << low) - 1)
        left_bits, right_bits = high, low
        for state in states:
            mac = state.copy()
            mac.update(right.to_bytes(8, "big"))
            mixed = left ^ (int.from_bytes(mac.digest(), "big") & ((1 << left_bits) - 1))
            left, right = right, mixed
            left_bits, right_bits = right_bits, left_bits
        result = (left << right_bits) | right
        if len(cache) >= _CACHE:
            cache.clear()
        cache[number] = result
        return result

    return permute


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
