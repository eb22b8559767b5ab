"""How far a transfer has got: one event per step, for a progress bar or JSON lines.

The library reports progress through a callback, ``on_progress(event)``, called after
each step (a chunk streamed, a batch merged); it never prints. ``done`` of ``total`` is
the whole phase across tables (the manifest's row counts make the total known up
front, so a bar can show rows/s and an ETA); ``rows`` of ``table_rows`` is the current
table's share::

    def show(event: TransferProgress) -> None:
        print(f"{event.phase} {event.table}: {event.done}/{event.total} rows")

    import_bundle(conn, "out/", on_progress=show)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressCallback", "TransferProgress"]


@dataclass(frozen=True)
class TransferProgress:
    """One step of a transfer.

    ``phase`` names what moves (``load``: rows streamed into the server, ``merge``: rows
    written into their tables, ``delete``: tables being emptied of rows not in a bundle,
    ``export``: rows written to files); ``table`` is ``schema.name``.
    """

    phase: str
    table: str
    rows: int
    table_rows: int
    done: int
    total: int

    @property
    def fraction(self) -> float | None:
        """Return ``done / total`` between 0 and 1, or ``None`` when the total is unknown."""
        return min(self.done / self.total, 1.0) if self.total > 0 else None


ProgressCallback = Callable[[TransferProgress], None]
