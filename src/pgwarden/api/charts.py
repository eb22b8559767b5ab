"""What the dashboard's charts draw: a kind, labels and series, for dashboard.js."""

from __future__ import annotations

from typing import Any

__all__ = ["chart", "size_chart"]


def chart(
    kind: str,
    title: str,
    labels: list[str],
    series: list[list[float]],
    *,
    names: list[str] | None = None,
    stacked: bool = False,
) -> dict[str, Any]:
    """Return what dashboard.js needs to draw one chart."""
    return {
        "type": kind,
        "title": title,
        "labels": labels,
        "series": [
            {"name": (names or [title])[i] if names else title, "data": values}
            for i, values in enumerate(series)
        ],
        "stacked": stacked,
    }


def size_chart(series: Any) -> dict[str, Any] | None:
    """Return the chart of the database's size over ``series`` of snapshots, if any."""
    if not isinstance(series, list) or not series:
        return None
    return chart(
        "line", "Database size (bytes)",
        [f"{s.taken_at:%Y-%m-%d %H:%M:%S}" for s in series],
        [[int(s.figures.get("database_bytes", 0)) for s in series]],
    )  # fmt: skip
