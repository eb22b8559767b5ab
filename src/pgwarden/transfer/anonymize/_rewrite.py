"""Rewrite the transformed columns of COPY text, a chunk of whole lines at a time.

The export's hot loop: a chunk is split on tabs at once, each transformed column goes
through its function as one list (see :meth:`TableTransform.copy_fields`), and the
chunk is joined again; past a few MiB, chunks go to forked worker processes when the
machine has the CPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

from pgwarden.errors import UserError
from pgwarden.transfer.anonymize._workers import WorkerPool

__all__ = ["rewrite_chunks", "rewritten"]

_FLUSH = 1 << 20
# A transformed table larger than this goes to worker processes (when there are CPUs).
_PARALLEL_AFTER = 4 << 20


class _Sink(Protocol):
    def write(self, chunk: bytes) -> Any: ...


def rewritten(
    chunks: Iterable[bytes],
    sink: _Sink,
    fields: Sequence[tuple[int, Callable[[list[bytes]], list[bytes]]]],
    *,
    report: Callable[[int], None] | None,
    workers: int | None = None,
    parallel_after: int = _PARALLEL_AFTER,
) -> int:
    """Write COPY text ``chunks`` with ``fields`` rewritten to ``sink``; return the rows.

    See :func:`rewrite_chunks`; ``report(rows)`` is called about every MiB written.
    """
    rows = 0
    out: list[bytes] = []
    size = 0
    for data, count in rewrite_chunks(
        chunks, fields, workers=workers, parallel_after=parallel_after
    ):
        rows += count
        out.append(data)
        size += len(data)
        if size >= _FLUSH:
            sink.write(b"".join(out))
            out.clear()
            size = 0
            if report:
                report(rows)
    sink.write(b"".join(out))
    if report:
        report(rows)
    return rows


def rewrite_chunks(
    chunks: Iterable[bytes],
    fields: Sequence[tuple[int, Callable[[list[bytes]], list[bytes]]]],
    *,
    workers: int | None = None,
    parallel_after: int = _PARALLEL_AFTER,
) -> Iterator[tuple[bytes, int]]:
    """Yield COPY text ``chunks`` with ``fields`` (position, function of a column) rewritten,
    as (whole lines, how many), in order.

    A chunk of whole lines at a time (see :func:`_rewrite_chunk`); a line cut by a
    chunk's end waits for the next chunk, and a last line without its newline gets one.
    Past ``parallel_after`` bytes, chunks go to ``workers`` forked processes (``None``:
    see :meth:`WorkerPool.start`), in tasks of about 1 MiB, one a worker at a time, and
    come back in order.
    """
    columns = [_Column(index, function) for index, function in fields]
    rest = b""
    seen = 0
    pool: WorkerPool | None = None
    pooled = False  # whether a pool was asked for (it may have been refused: None)
    try:
        for chunk in chunks:
            if rest:
                chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            if not cut:
                continue
            piece = chunk[:cut] if rest else chunk
            seen += cut
            if not pooled and seen > parallel_after:
                pool = WorkerPool.start(partial(_rewrite_chunk, columns=columns), workers)
                pooled = True
            yield from [_rewrite_chunk(piece, columns)] if pool is None else pool.submit(piece)
        if rest:
            rest += b"\n"
            yield from pool.submit(rest) if pool is not None else [_rewrite_chunk(rest, columns)]
        if pool is not None:
            yield from pool.finish()
    finally:
        if pool is not None:
            pool.close()


def _rewrite_chunk(chunk: bytes, columns: Sequence[_Column]) -> tuple[bytes, int]:
    """Return COPY text lines (``chunk``, newline-terminated) rewritten, and their count.

    COPY text escapes tabs and newlines inside values, so every tab and newline is a
    separator, and every line has as many fields as the first. The chunk is split on
    tabs at once (C speed) into one flat list: a line's last field and the next line's
    first stay one item, ``last\\nfirst``, so line r's field i (not the first or last)
    is item ``r * (width - 1) + i``, and a column is one slice of the list, put back in
    one slice assignment. No list and no Python code per line: only the values of the
    rewritten columns meet Python functions. First and last fields take one more
    split and join of those joint items (see :func:`_rewrite_edges`).
    """
    rows = chunk.count(b"\n")
    width = chunk.count(b"\t", 0, chunk.index(b"\n")) + 1
    if width == 1:
        (column,) = columns
        return b"\n".join(column.rewrite(chunk[:-1].split(b"\n"))) + b"\n", rows
    step = width - 1
    items = chunk[:-1].split(b"\t")
    if len(items) != rows * step + 1 or any(column.index >= width for column in columns):
        raise UserError(
            "COPY sent lines with different numbers of fields; the rows cannot be transformed.",
            hint="Report it: pgwarden expects COPY text from the server as it is.",
        )
    first = last = None
    for column in columns:
        if column.index == 0:
            first = column
        elif column.index == step:
            last = column
        else:
            items[column.index :: step] = column.rewrite(items[column.index :: step])
    if first is not None or last is not None:
        _rewrite_edges(items, step, rows, first, last)
    return b"\t".join(items) + b"\n", rows


def _rewrite_edges(
    items: list[bytes], step: int, rows: int, first: _Column | None, last: _Column | None
) -> None:
    """Rewrite the first and last fields of lines split as :func:`_rewrite_chunk` does.

    ``items[0]`` is line 0's first field; ``items[step::step]`` the joints
    ``last_0\\nfirst_1``, ..., ``last_R-2\\nfirst_R-1``, and ``last_R-1`` alone.
    """
    joints = b"\n".join(items[step::step]).split(b"\n")  # last_0, first_1, last_1, ...
    if last is not None:
        joints[0::2] = last.rewrite(joints[0::2])
    if first is not None:
        firsts = first.rewrite([items[0], *joints[1::2]])
        items[0] = firsts[0]
        joints[1::2] = firsts[1:]
    # Join again, "\n" inside a joint and "\t" between them, and split on "\t".
    woven = [b"\n"] * (2 * len(joints) - 1)
    woven[0::2] = joints
    woven[3::4] = [b"\t"] * (rows - 1)
    items[step::step] = b"".join(woven).split(b"\t")


class _Column:
    """A rewritten column: its position, its function, and its results while repeats pay.

    The function takes a list of fields and returns the new ones (see
    :meth:`TableTransform.copy_fields`). A foreign key or a denormalized e-mail repeats;
    a primary key or a user's own e-mail does not. The first :attr:`TRIAL` values
    decide: if fewer than a fifth of them had been seen before, the column stops keeping
    results and every value goes straight through its function. Long values (over
    :attr:`LONG` bytes on average) are never kept.
    """

    TRIAL = 1 << 15
    LIMIT = 1 << 18
    LONG = 128

    def __init__(self, index: int, function: Callable[[list[bytes]], list[bytes]]) -> None:
        self.index = index
        self.function = function
        self.cache: dict[bytes, bytes] | None = {}
        self.seen = 0
        self.hits = 0

    def rewrite(self, values: list[bytes]) -> list[bytes]:
        """Return the new fields for ``values``, in order."""
        cache = self.cache
        if cache is None:
            return self.function(values)
        if self.seen < self.TRIAL and sum(map(len, values)) > self.LONG * len(values):
            self.cache = None
            return self.function(values)
        # set.difference(dict) looks each value up in the dict: O(values), not O(cache).
        missing = list(set(values).difference(cache))
        if len(cache) + len(missing) > self.LIMIT:
            cache.clear()
            missing = list(set(values))
        cache.update(zip(missing, self.function(missing), strict=True))
        if self.seen < self.TRIAL:
            self.seen += len(values)
            self.hits += len(values) - len(missing)
            if self.seen >= self.TRIAL and self.hits * 5 < self.seen:
                self.cache = None
        return list(map(cache.__getitem__, values))
