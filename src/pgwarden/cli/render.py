"""Render results for people (rich) and machines (one JSON document, stable keys)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["dump_json", "jsonable", "key_value_table", "table"]


def jsonable(value: Any) -> Any:
    """Return ``value`` made of JSON types: dataclasses become objects, paths strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in dir(type(value)):
            if isinstance(getattr(type(value), name, None), property) and not name.startswith("_"):
                fields[name] = jsonable(getattr(value, name))
        return fields
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def dump_json(console: Console, value: Any) -> None:
    """Print ``value`` as one JSON document, keys in a stable order."""
    console.print_json(json.dumps(jsonable(value), sort_keys=True), highlight=False)


def key_value_table(rows: Iterable[tuple[str, Any]], *, title: str | None = None) -> Table:
    """Return a two-column table of names and values."""
    grid = Table.grid(padding=(0, 2))
    grid.title = title
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, "-" if value is None else str(value))
    return grid


def table(columns: list[str], rows: Iterable[Iterable[Any]], *, title: str | None = None) -> Table:
    """Return a table with a header row."""
    result = Table(*columns, title=title, title_justify="left", header_style="bold")
    for row in rows:
        # Text, not markup: a cell holds data (a query, a name) that may contain [brackets].
        result.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    return result
