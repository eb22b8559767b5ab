"""Hypothesis strategies of legal but hostile PostgreSQL names, for the tests of every
area that writes SQL around names: reserved words, one-letter names that generated SQL
uses as aliases, quotes, placeholders of every layer (``%s``, ``:x``, ``$1``), dots,
newlines, non-ASCII and names up to the 63-byte limit."""

from __future__ import annotations

from hypothesis import strategies as st

# One-letter and short names the generated SQL of pgwarden uses as aliases.
ALIASES = ["a", "c", "d", "i", "k", "n", "p", "r", "s", "t", "u", "x", "ix", "ty", "rn", "g"]

HOSTILE = [
    *ALIASES,
    "select",
    "table",
    "user",
    "order",
    "group",
    'Mixed "Case" col',
    '"',
    "a%b",
    "%s",
    "%%",
    "%(x)s",
    ":x",
    "x:y",
    "::",
    "$1",
    "$$",
    "a$pgwarden$b",
    "?",
    "O'Reilly",
    "''",
    "back\\slash",
    "a.b",
    "semi;colon",
    "-- comment",
    "/*",
    "new\nline",
    "tab\tbed",
    " lead",
    "UPPER",
    "é",
    "日本語",
    "🐘",
    "x" * 63,
    "é" * 31 + "x",  # 63 bytes
    "ab" * 26,  # 52 bytes: over 50
]

_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=12,
)


def legal(name: str) -> bool:
    """Tell whether PostgreSQL keeps ``name`` as it is: 1 to 63 bytes, no NUL."""
    return 0 < len(name.encode("utf-8")) <= 63 and "\x00" not in name


names = st.one_of(st.sampled_from(HOSTILE), _TEXT).filter(legal)
"""A legal name, hostile as often as not."""

# A schema name may not start with pg_ (reserved), nor be one pgwarden keeps for itself.
schema_names = names.filter(lambda n: not n.lower().startswith("pg_") and n != "pgwarden")


def distinct(count: int) -> st.SearchStrategy[list[str]]:
    """Return ``count`` different names, for objects that share a namespace."""
    return st.lists(names, min_size=count, max_size=count, unique=True)


def quoted(name: str) -> str:
    """Return ``name`` as a quoted identifier, for the tests' own SQL."""
    return '"' + name.replace('"', '""') + '"'
