"""The strict schema of a bundle's ``manifest.json``, checked before anything acts on it.

A manifest comes from storage, so from anyone who could write there: every field has its
type (no coercion: ``"5"`` is not a number, ``1`` is not ``true``), every string and list
a bound, no unknown key, and nesting no deeper than the format's. :func:`parse_manifest`
returns the validated document or raises :class:`ManifestInvalid` with a short account
of what is wrong (never the offending value, which may be huge or hostile).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Literal

import pydantic_core
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as _ValidationError

from pgwarden._sql import table_key

__all__ = [
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "ManifestInvalid",
    "UnsupportedVersion",
    "parse_manifest",
]

MAX_MANIFEST_BYTES = 64 << 20
_MAX_TABLES = 100_000
_MAX_COLUMNS = 1600  # PostgreSQL's limit on a table's columns
_ERRORS_SHOWN = 3
# A data file as a manifest may name it: one plain name in data/ (as bundles written
# before "." was encoded name it too). "~" marks a shortened or numbered name.
_FILE = re.compile(r"data/(?!\.)[A-Za-z0-9_.%~-]{1,255}")

# Identifiers: PostgreSQL's are at most 63 bytes (NAMEDATALEN), with no NUL; leave room
# for a server built with a larger NAMEDATALEN.
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
Text = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\x00]*$")]
Qualified = Annotated[str, StringConstraints(min_length=3, max_length=511)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Names = Annotated[list[Name], Field(max_length=_MAX_COLUMNS)]
Count = Annotated[int, Field(ge=0, lt=1 << 63)]


class ManifestInvalid(ValueError):
    """Raise when a manifest is not JSON, or not a manifest of this format."""


class UnsupportedVersion(ValueError):
    """Raise when a manifest is of a format version this pgwarden does not read."""


def _aware(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError("a timestamp without a time zone")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Column(_Strict):
    name: Name
    type: Text
    nullable: bool


class References(_Strict):
    schema_: Name = Field(alias="schema")
    table: Name
    columns: Names


class ForeignKey(_Strict):
    columns: Names
    references: References


class Table(_Strict):
    schema_: Name = Field(alias="schema")
    name: Name
    file: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    format: Literal["copy", "jsonl"]
    columns: Annotated[list[Column], Field(max_length=_MAX_COLUMNS)]
    primary_key: Names
    foreign_keys: Annotated[list[ForeignKey], Field(max_length=10_000)]
    rows: Count
    bytes: Count
    sha256: Sha256


class Source(_Strict):
    database: Text
    server_version: Text


class Transform(_Strict):
    table: Text
    column: Text
    kind: Text


class Manifest(_Strict):
    pgwarden_bundle: Literal[1]
    created_at: Annotated[str, StringConstraints(max_length=64), AfterValidator(_aware)]
    source: Source
    schema_fingerprint: Sha256
    tables: Annotated[list[Table], Field(max_length=_MAX_TABLES)]
    order: Annotated[list[Qualified], Field(max_length=_MAX_TABLES)]
    transforms: Annotated[list[Transform], Field(max_length=_MAX_TABLES * 10)] = []
    cycles: Annotated[
        list[Annotated[list[Qualified], Field(max_length=_MAX_TABLES)]],
        Field(max_length=_MAX_TABLES),
    ] = []


def parse_manifest(raw: bytes, version: int) -> Manifest:
    """Return the manifest in ``raw`` (JSON bytes), validated against the schema.

    Raises :class:`ManifestInvalid` when it is not JSON (nesting past 200 levels
    included), or not of the schema; :class:`UnsupportedVersion` when its
    ``pgwarden_bundle`` is another version than ``version``.
    """
    try:
        data = pydantic_core.from_json(raw)
    except ValueError as exc:
        raise ManifestInvalid(f"it is not JSON: {exc}") from None
    found = data.get("pgwarden_bundle", version) if isinstance(data, dict) else version
    if isinstance(found, bool) or (isinstance(found, int | str) and found != version):
        raise UnsupportedVersion(repr(found)[:20])  # other types: the schema says what is wrong
    try:
        manifest = Manifest.model_validate(data)
    except _ValidationError as exc:
        raise ManifestInvalid(_summary(exc)) from None
    if problems := _inconsistencies(manifest):
        if len(problems) > _ERRORS_SHOWN:
            problems[_ERRORS_SHOWN:] = [f"{len(problems) - _ERRORS_SHOWN} more problem(s)"]
        raise ManifestInvalid(f"it is inconsistent: {'; '.join(problems)}")
    return manifest


def _inconsistencies(manifest: Manifest) -> list[str]:
    """Return what the manifest says that cannot be so: repeats, unknown names, bad files."""
    names = Counter(table_key(table.schema_, table.name) for table in manifest.tables)
    problems = [f"table {name} is listed twice" for name, n in sorted(names.items()) if n > 1]
    files = Counter(table.file for table in manifest.tables)
    problems += [f"file {f[:80]!r} is shared" for f, n in sorted(files.items()) if n > 1]
    for table in manifest.tables:
        qualified = table_key(table.schema_, table.name)
        if not _FILE.fullmatch(table.file):
            problems.append(
                f"{qualified} names the file {table.file[:80]!r}, not a plain name in data/"
            )
        columns = Counter(column.name for column in table.columns)
        if repeated := sorted(c for c, n in columns.items() if n > 1):
            problems.append(f"{qualified} lists columns twice: {repeated[:5]}")
        if missing := [c for c in table.primary_key if c not in columns]:
            problems.append(f"{qualified}'s primary key names unknown columns {missing[:5]}")
        for fk in table.foreign_keys:
            if missing := [c for c in fk.columns if c not in columns]:
                problems.append(f"{qualified}'s foreign key names unknown columns {missing[:5]}")
    if Counter(manifest.order) != names:
        problems.append("order does not list every table exactly once")
    return problems


def _summary(error: _ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:_ERRORS_SHOWN]:
        where = ".".join(_location(part) for part in item["loc"]) or "the document"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"{more} more problem(s)")
    return "; ".join(problems)


def _location(part: str | int) -> str:
    text = str(part)
    return text if len(text) <= 40 and text.isprintable() else repr(text[:40]) + "…"
