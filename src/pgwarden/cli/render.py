"""Render results for people (rich) and machines (one JSON document, stable keys)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import Progress as ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["RowBars", "RowProgressView", "dump_json", "jsonable", "key_value_table", "table"]


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
    grid.title = None if title is None else Text(title)
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(Text(key), _cell(value))
    return grid


def table(columns: list[str], rows: Iterable[Iterable[Any]], *, title: str | None = None) -> Table:
    """Return a table with a header row; a cell that is a rich ``Text`` keeps its style."""
    result = Table(
        *columns,
        title=None if title is None else Text(title),
        title_justify="left",
        header_style="bold",
    )
    for row in rows:
        result.add_row(*(_cell(cell) for cell in row))
    return result


def _cell(value: Any) -> Text:
    # Text, not markup: a cell holds data (a query, a name) that may contain [brackets].
    if isinstance(value, Text):
        return value
    return Text("-" if value is None else str(value))


class RowBars:
    """Bars of rows on stderr, one per key, with rows/s and an ETA, on a terminal only.

    ``elapsed(key)`` counts from the first event of that key whether bars are shown or
    not, for JSON progress lines.
    """

    def __init__(self, *, enabled: bool) -> None:
        self._console = Console(stderr=True, highlight=False)
        self.shown = enabled and self._console.is_terminal
        self._bar = ProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> RowBars:
        if self.shown:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.shown:
            self._bar.stop()

    def elapsed(self, key: str) -> float:
        """Return the seconds since the first event of ``key``."""
        now = time.monotonic()
        return now - self._started.setdefault(key, now)

    def update(self, key: str, description: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` rows on the bar of ``key`` (made on first use)."""
        if not self.shown:
            return
        elapsed = self.elapsed(key)
        rate = f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        size = max(total, done) or None
        task = self._tasks.get(key)
        if task is None:
            task = self._bar.add_task(escape(description), total=size, rate=rate)
            self._tasks[key] = task
        self._bar.update(
            task, description=escape(description), completed=done, total=size, rate=rate
        )


class RowProgressView:
    """Progress on stderr: :class:`RowBars` on a terminal, JSON lines with ``--json``,
    nothing otherwise. Subclasses show an event with :meth:`emit` or :attr:`bars`."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.bars = RowBars(enabled=not as_json)

    def __enter__(self) -> Self:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bars.__exit__(*exc_info)

    def emit(self, line: Mapping[str, Any]) -> None:
        """Write ``line`` as one JSON object on a line of stderr."""
        click.echo(json.dumps(line, sort_keys=True), err=True)
