"""Deterministic fakes: names, user names and e-mail addresses picked by keyed digests.

``name``, ``first_name``, ``last_name`` and ``user_name`` are built from a Faker locale's
own formats and lists, each part picked by a window of the keyed PRF (:mod:`._prf`) of
the value; a column's fakes are made a whole list at a time (a few AES calls for the
PRF, numpy for the picks). Any other provider runs Faker itself, seeded per value.
"""

from __future__ import annotations

import hmac
import re
import struct
from binascii import hexlify
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import numpy as np
from faker import Faker
from faker.utils.text import slugify

from pgwarden.errors import UserError
from pgwarden.transfer.anonymize._prf import ValuePRF
from pgwarden.transfer.anonymize._values import (
    NULL,
    ColumnFunction,
    CopyFieldFunction,
    Mac,
    ValueFunction,
    as_text,
    raw_value,
)
from pgwarden.transfer.copytext import format_copy_field, parse_copy_field

__all__ = ["fake", "fake_email"]

_EMAIL_DOMAINS = (b"@example.com", b"@example.net", b"@example.org")
_DOMAIN_SIZE = len(_EMAIL_DOMAINS[0])
assert all(len(domain) == _DOMAIN_SIZE for domain in _EMAIL_DOMAINS), "one width for numpy"
_DOMAIN_BYTES = np.frombuffer(b"".join(_EMAIL_DOMAINS), dtype=np.uint8).reshape(-1, _DOMAIN_SIZE)
_HEX = np.frombuffer(b"".join(b"%02x" % byte for byte in range(256)), dtype=np.uint8)
_HEX = _HEX.reshape(256, 2)


def fake(salt: bytes, namespace: str, provider: str, locale: str | None) -> ValueFunction:
    """Return a function giving a fake ``provider`` value (a Faker method) fixed by the input.

    ``name``, ``first_name``, ``last_name`` and ``user_name`` are built from the Faker
    locale's own formats and lists (uniform picks; formats by their weights), each part
    picked by 32 bits of the keyed PRF of the input (:class:`ValuePRF`, key:
    ``HMAC-SHA256(salt, "fake" NUL namespace)``): about 0.3 µs a value a column at a
    time. Any other provider runs Faker itself
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
    """A fake from a template, picked by the keyed PRF (32 bytes) of the input's bytes.

    An e-mail is the template's user name, ``.``, bytes 20 to 23 of the PRF in hex, and
    one of the reserved domains by byte 24 (see :class:`_Template` for the rest).
    """

    def __init__(
        self, salt: bytes, namespace: str, template: _Template, *, email: bool = False
    ) -> None:
        self.prf = ValuePRF(hmac.digest(salt, b"fake\0" + namespace.encode(), "sha256"))
        self.template = template
        self.email = email

    def make(self, data: bytes) -> bytes:
        """Return the fake for a value's UTF-8 bytes."""
        mac = self.prf.one(data)
        text = self.template.pick(mac)
        if self.email:
            return text + b"." + hexlify(mac[20:24]) + _EMAIL_DOMAINS[mac[24] % 3]
        return text

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.make(as_text(value).encode()).decode()

    def copy_field(self, field: bytes) -> bytes:
        return NULL if field == NULL else self.make(raw_value(field))

    def column_function(self) -> ColumnFunction:
        # What make() does, a column at a time, with no Python code run per value: the
        # PRF of the whole column in a few AES calls, and the picks and the joins of
        # parts in numpy. This runs a million times a table.
        prf, template, email = self.prf, self.template, self.email

        def column(fields: list[bytes]) -> list[bytes]:
            if not fields:
                return []
            nulls: list[int] = []
            if b"\\" in b"".join(fields):  # NULLs (\\N) or escapes
                nulls = [index for index, field in enumerate(fields) if field == NULL]
                fields = [raw_value(field) if b"\\" in field else field for field in fields]
            digests = prf.many(fields)
            texts = template.pick_many(digests.view("<u4"))
            if email:
                suffixes = np.empty((len(fields), 1 + 8 + _DOMAIN_SIZE), dtype=np.uint8)
                suffixes[:, 0] = ord(".")
                suffixes[:, 1:9] = _HEX[digests[:, 20:24]].reshape(-1, 8)
                suffixes[:, 9:] = _DOMAIN_BYTES[digests[:, 24] % len(_EMAIL_DOMAINS)]
                texts = np.strings.add(texts, suffixes.view(f"S{suffixes.shape[1]}").ravel())
            out: list[bytes] = texts.tolist()
            for index in nulls:
                out[index] = NULL
            return out

        return column


class _SeededFake(CopyFieldFunction):
    def __init__(self, salt: bytes, namespace: str, generator: Faker, provider: str) -> None:
        self.mac = Mac(salt, namespace)
        self.generator = generator
        self.method = getattr(generator, provider)
        self.one = lru_cache(maxsize=1 << 16)(self._one)

    def _one(self, text: str) -> str:
        self.generator.seed_instance(int.from_bytes(self.mac(text.encode())[:8], "big"))
        return str(self.method())

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.one(as_text(value))

    def copy_field(self, field: bytes) -> bytes:
        return NULL if field == NULL else format_copy_field(self(parse_copy_field(field)))


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
        # For pick_many, part i of every format in one array of numpy byte strings (no
        # choice ends in a NUL byte, which the padding would take): format f's choices at
        # offsets[f, i], counts[f, i] of them; a format with fewer parts gets b"" there.
        width = max(len(parts) for parts in self.formats)
        offsets = np.zeros((len(self.formats), width), dtype=np.int64)
        counts = np.ones((len(self.formats), width), dtype=np.int64)
        self.parts = []
        for i in range(width):
            choices: list[bytes] = []
            for number, parts in enumerate(self.formats):
                part = parts[i] if i < len(parts) else (b"",)
                offsets[number, i], counts[number, i] = len(choices), len(part)
                choices += part
            self.parts.append(np.array(choices, dtype="S"))
        self.offsets, self.counts = offsets, counts

    def pick(self, mac: bytes) -> bytes:
        """Return the value for one digest."""
        words = _WORDS.unpack_from(mac)
        parts = self.formats[self.table[words[7] >> 20]]
        return b"".join([choices[words[i % 5] % len(choices)] for i, choices in enumerate(parts)])

    def pick_many(self, words: Any) -> Any:
        """Return :meth:`pick` of every row of ``words`` (an array of 8 words a row), as
        an array of numpy byte strings: a gather and a join a part, every format at once."""
        formats = self.table_array[words[:, 7] >> 20]
        texts = None
        for i, choices in enumerate(self.parts):
            index = self.offsets[formats, i] + words[:, i % 5] % self.counts[formats, i]
            part = choices[index]
            texts = part if texts is None else np.strings.add(texts, part)
        return texts


_WORDS = struct.Struct("<8I")


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
