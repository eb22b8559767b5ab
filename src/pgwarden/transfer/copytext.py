"""Read and write rows in PostgreSQL's COPY text format, and JSONL values as COPY text.

COPY text is one row a line, fields separated by tabs, ``\\N`` for NULL, and a backslash
escaping the backslash, tab, newline and carriage return inside a value. The export
parses it only for tables that have transforms; the import side uses the same codec::

    values = parse_copy_line(line)            # list[str | None]
    line = format_copy_row(values)            # bytes, newline included
    value = parse_copy_field(field)           # one field: str | None
    field = format_copy_field(value)          # bytes, escaped

:func:`json_value_to_text` turns a JSONL value into the text COPY FROM expects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "format_copy_field",
    "format_copy_row",
    "json_value_to_text",
    "parse_copy_field",
    "parse_copy_line",
    "unescape_copy_field",
]

_BYTES_ESCAPE = re.compile(rb"\\(?:[0-7]{1,3}|x[0-9A-Fa-f]{1,2}|.)", re.DOTALL)
_BYTES_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
# What PostgreSQL writes: the one-letter escapes and an escaped backslash.
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_NUMERIC = re.compile(r"\\[0-7x]")
_OUT = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _unescape_bytes(match: re.Match[bytes]) -> bytes:
    seq = match.group()[1:]
    if seq in _BYTES_SIMPLE:
        return _BYTES_SIMPLE[seq]
    if seq[:1] == b"x" and len(seq) > 1:
        return bytes([int(seq[1:], 16)])
    if seq[:1] in (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"):
        return bytes([int(seq, 8) & 0xFF])
    return seq


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _SIMPLE.get(char, char)


def unescape_copy_field(field: bytes) -> bytes:
    """Return a COPY text field with its backslash escapes resolved (``\\N`` is the caller's).

    Octal and hex escapes (``\\101``, ``\\x41``) stand for bytes in the file's encoding.
    """
    return _BYTES_ESCAPE.sub(_unescape_bytes, field) if b"\\" in field else field


def _field(field: str, encoding: str) -> str | None:
    if field == "\\N":
        return None
    if _NUMERIC.search(field):  # byte escapes: resolve them as bytes, then decode
        return unescape_copy_field(field.encode(encoding)).decode(encoding)
    return _ESCAPE.sub(_unescape, field)


def parse_copy_line(line: bytes, *, encoding: str = "utf-8") -> list[str | None]:
    """Return the values of one COPY text line (without its newline); ``None`` for NULL."""
    text = line.decode(encoding)
    if text.endswith("\n"):
        text = text[:-1]
    if "\\" not in text:
        return text.split("\t")  # type: ignore[return-value]  # list[str] is list[str | None]
    return [_field(field, encoding) if "\\" in field else field for field in text.split("\t")]


def format_copy_row(values: Sequence[str | None], *, encoding: str = "utf-8") -> bytes:
    """Return one COPY text line for ``values``, newline included."""
    return (
        "\t".join(
            "\\N"
            if value is None
            else value.translate(_OUT)
            if "\\" in value or "\t" in value or "\n" in value or "\r" in value
            else value
            for value in values
        )
        + "\n"
    ).encode(encoding)


def _json_int(digits: str) -> int | Decimal:
    # ``-0`` as an int is 0: a float column's negative zero would lose its sign.
    return Decimal(digits) if digits == "-0" else int(digits)


def load_json_line(line: str | bytes) -> Any:
    """Return the value of one JSONL line, every number exactly as written."""
    return json.loads(line, parse_float=Decimal, parse_int=_json_int)


def json_value_to_text(value: Any) -> str | None:
    """Return the text PostgreSQL reads for a JSONL value.

    Strings are as PostgreSQL printed them; booleans become ``true``/``false``; numbers
    their digits; objects and arrays (json and jsonb columns) their JSON text.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_copy_field(field: bytes, *, encoding: str = "utf-8") -> str | None:
    """Return the value of one COPY text field (escapes resolved); ``None`` for ``\\N``."""
    if field == b"\\N":
        return None
    text = field.decode(encoding)
    return _field(text, encoding) if "\\" in text else text


def format_copy_field(value: str | None, *, encoding: str = "utf-8") -> bytes:
    """Return one COPY text field for ``value``, escaped; ``\\N`` for ``None``."""
    if value is None:
        return b"\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.translate(_OUT)
    return value.encode(encoding)
