"""Quote identifiers for generated SQL so that every layer reads them as written.

A statement pgwarden builds from names goes through SQLAlchemy's ``text()`` (or
Alembic's ``op.execute``), which takes ``:name`` for a bind parameter even inside a
quoted identifier, and through a driver whose placeholders are ``%s``, which takes
``%`` for one whenever parameters are given. Quoting alone does not protect a name from
either, so a name holding ``%`` or ``:`` is written with Unicode escapes
(``U&"a\\0025b"`` is the identifier ``a%b``); every other name is quoted only where
PostgreSQL needs it (``users``, ``"Users"``, ``"select"``).

Names meant for people (a finding's text) or for ``::regclass`` and ``parse_ident``
(which do not know ``U&``) use ``plain=True``: the ordinary ``"..."`` form.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql.base import PGDialect

from pgwarden.errors import UserError

__all__ = ["qualified", "quote_identifier", "split_table_key", "table_key"]

# "named", so that the preparer leaves a "%" in a name single.
_PREPARER = PGDialect(paramstyle="named").identifier_preparer  # type: ignore[no-untyped-call]
# Characters some layer between a statement and the server reads as a parameter.
_READ_AS_PARAMETER = frozenset("%:")


def quote_identifier(name: str, *, plain: bool = False) -> str:
    """Return ``name`` as a PostgreSQL identifier, safe in any generated statement.

    ``plain`` keeps the ordinary ``"..."`` form even for a ``%`` or ``:``: for text a
    person reads, and for a name passed as a value to ``::regclass``, ``to_regclass`` or
    ``parse_ident``, none of which knows ``U&``.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UserError(
            f"{name!r} is not a usable identifier.", hint="Give a non-empty name without NUL."
        )
    if plain or _READ_AS_PARAMETER.isdisjoint(name):
        return str(_PREPARER.quote(name))
    escaped = "".join(
        f"\\{ord(char):04X}" if char in _READ_AS_PARAMETER else char
        for char in name.replace("\\", "\\\\").replace('"', '""')
    )
    return f'U&"{escaped}"'


def qualified(schema: str, name: str, *, plain: bool = False) -> str:
    """Return ``schema.name``, each part quoted by :func:`quote_identifier`."""
    return f"{quote_identifier(schema, plain=plain)}.{quote_identifier(name, plain=plain)}"


def table_key(schema: str, name: str) -> str:
    """Return ``schema.name`` as pgwarden names a table in reports, bundles and keys.

    Plain where that is unambiguous; a part holding a dot or a double quote is written
    in double quotes (``"a.b".c`` and ``a."b.c"`` are two tables), so that
    :func:`split_table_key` always finds the parts again.
    """
    return f"{_key_part(schema)}.{_key_part(name)}"


def split_table_key(key: str) -> tuple[str, str]:
    """Return ``(schema, name)`` of a :func:`table_key`; a key without a dot is in ``public``."""
    schema, rest = _take_part(key)
    if not rest.startswith("."):
        return "public", schema
    name, rest = _take_part(rest[1:])
    if rest:
        raise ValueError(f"{key!r} is not schema.name")
    return schema, name


def _key_part(part: str) -> str:
    return '"' + part.replace('"', '""') + '"' if "." in part or '"' in part else part


def _take_part(text: str) -> tuple[str, str]:
    """Return the first part of ``text`` (quoted or up to a dot) and what follows it."""
    if not text.startswith('"'):
        part, dot, rest = text.partition(".")
        return part, dot + rest
    chars, i = [], 1
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] == '"':
                chars.append('"')
                i += 2
                continue
            return "".join(chars), text[i + 1 :]
        chars.append(text[i])
        i += 1
    raise ValueError(f"{text!r} has an unclosed quote")
