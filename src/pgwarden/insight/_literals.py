"""Quote a string as an SQL literal, for fix statements a person copies and runs."""

from __future__ import annotations

__all__ = ["literal"]


def literal(value: str) -> str:
    """Return ``value`` as an SQL string literal, whatever ``standard_conforming_strings`` is.

    Quotes are doubled; a value with a backslash is written as an ``E''`` string with
    the backslashes doubled, which reads the same under either setting.
    """
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return f"'{quoted}'"
