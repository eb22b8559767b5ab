"""Rewrite the transformed columns of COPY text, a chunk of whole lines at a time.

The export's hot loop: a chunk is split on tabs at once, each transformed column goes
through its function as one list (see :meth:`TableTransform.copy_fields`), and the
chunk is joined again; past a few MiB, chunks go to forked worker processes when the
machine has the CPUs.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any, Protocol

from pgwarden.errors import PgwardenError, UserError

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
    see :meth:`_Pool.start`), in tasks of about 1 MiB, at most two a worker in flight,
    and come back in order.
    """
    columns = [_Column(index, function) for index, function in fields]
    rest = b""
    seen = 0
    pool: _Pool | None = None
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
                pool, pooled = _Pool.start(columns, workers), True
            yield from [_rewrite_chunk(piece, columns)] if pool is None else pool.submit(piece)
        if rest:
            rest += b"\n"
            yield from pool.submit(rest) if pool is not None else [_rewrite_chunk(rest, columns)]
        if pool is not None:
            yield from pool.finish()
    finally:
        if pool is not None:
            pool.close()


class _Pool:
    """Forked processes rewriting chunks, one task each at a time, results in order.

    Forked, so the workers inherit the compiled transforms (closures, which do not
    pickle). A task goes to each worker in turn, down a pipe of its own, as a length
    and the bytes; the rewritten bytes come back the same way. So results come back in
    order by reading the workers in turn, and nothing is pickled and no thread hands
    anything on: the main process's cost is copying a task into a pipe and its result
    out of one. A worker is given its next task once its last result is read, so
    neither side can block writing to the other.
    """

    TASK = 1 << 20  # bytes a task: smaller ones cost more in handoffs

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.pending: deque[_Worker] = deque()  # in the order the tasks were given
        self.turn = 0
        self.gathered: list[bytes] = []
        self.gathered_size = 0

    @classmethod
    def start(cls, columns: Sequence[_Column], workers: int | None) -> _Pool | None:
        """Return a pool of ``workers`` processes, or ``None`` for fewer than two.

        ``None`` is, on Linux, one a CPU less one, which the main process needs to take
        rows off the connection and write them: so none on a two-CPU machine, where
        (measured with the server on the same machine) the copying between processes
        costs about what a second worker saves. Elsewhere ``None`` is none: forking a
        process that has loaded system frameworks is not safe on macOS.
        """
        if workers is None:
            workers = max((os.cpu_count() or 1) - 1, 0) if sys.platform == "linux" else 0
        if workers < 2 or not hasattr(os, "fork"):
            return None
        started: list[_Worker] = []
        try:
            for _ in range(workers):
                started.append(_Worker.fork(columns, started))
        except BaseException:
            for worker in started:
                worker.stop()
            raise
        return cls(started)

    def submit(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """Take ``chunk`` (whole lines); return the results that must be taken now, in order.

        Chunks gather into tasks of about :attr:`TASK` bytes.
        """
        self.gathered.append(chunk)
        self.gathered_size += len(chunk)
        if self.gathered_size < self.TASK:
            return []
        return self._send()

    def _send(self) -> list[tuple[bytes, int]]:
        task = self.gathered[0] if len(self.gathered) == 1 else b"".join(self.gathered)
        self.gathered.clear()
        self.gathered_size = 0
        worker = self.workers[self.turn]
        self.turn = (self.turn + 1) % len(self.workers)
        done = []
        while worker.busy:  # its result is the oldest still pending
            done.append(self.pending.popleft().result())
        worker.send(task)
        self.pending.append(worker)
        return done

    def finish(self) -> list[tuple[bytes, int]]:
        """Return every result still pending, in order."""
        done = self._send() if self.gathered else []
        while self.pending:
            done.append(self.pending.popleft().result())
        return done

    def close(self) -> None:
        """Stop the workers (at once: any result still pending is not wanted)."""
        for worker in self.workers:
            worker.stop()


_HEADER = struct.Struct("<qq")  # a task's or result's size in bytes; the result's rows


class _Worker:
    """One forked process rewriting the tasks it reads from a pipe (see :class:`_Pool`)."""

    def __init__(self, pid: int, tasks: int, results: int) -> None:
        self.pid = pid
        self.tasks = tasks  # the write end of the worker's task pipe
        self.results = results  # the read end of its result pipe
        self.busy = False

    @classmethod
    def fork(cls, columns: Sequence[_Column], siblings: Sequence[_Worker]) -> _Worker:
        """Start a worker rewriting with ``columns``; ``siblings`` are the pool's others."""
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        resize: int = getattr(fcntl, "F_SETPIPE_SZ", 0)  # Linux: fewer, larger reads and writes
        for end in (task_write, result_write) if resize else ():
            with suppress(OSError):
                fcntl.fcntl(end, resize, _Pool.TASK)
        pid = os.fork()
        if pid == 0:  # the worker: it never returns to the caller's code
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides
                for fd in (task_write, result_read):
                    os.close(fd)
                for sibling in siblings:
                    os.close(sibling.tasks)
                    os.close(sibling.results)
                _serve(task_read, result_write, columns)
                code = 0
            finally:
                os._exit(code)
        os.close(task_read)
        os.close(result_write)
        return cls(pid, task_write, result_read)

    def send(self, task: bytes) -> None:
        """Give the worker ``task`` (it must not be busy)."""
        try:
            _write(self.tasks, _HEADER.pack(len(task), 0), task)
        except BrokenPipeError:
            raise self.died() from None
        self.busy = True

    def result(self) -> tuple[bytes, int]:
        """Wait for the result of the worker's task; raise what the task raised."""
        try:
            size, rows = _HEADER.unpack(_read(self.results, _HEADER.size))
            data = _read(self.results, size)
        except EOFError:
            raise self.died() from None
        self.busy = False
        if rows < 0:
            raise pickle.loads(data)  # noqa: S301  # from our own fork
        return data, rows

    def died(self) -> PgwardenError:
        """Return the error for the worker's death mid-task."""
        return PgwardenError(
            f"a transform worker (process {self.pid}) stopped before it finished its rows; "
            "nothing was kept.",
            hint="Something killed it: the kernel's log (dmesg) says if it ran out of memory.",
        )

    def stop(self) -> None:
        """Stop the worker now and wait for it."""
        for fd in (self.tasks, self.results):
            with suppress(OSError):
                os.close(fd)
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(tasks: int, results: int, columns: Sequence[_Column]) -> None:
    """Rewrite each task read from ``tasks`` and write it to ``results``, until EOF."""
    while True:
        try:
            size, _ = _HEADER.unpack(_read(tasks, _HEADER.size))
        except EOFError:
            return
        try:
            data, rows = _rewrite_chunk(_read(tasks, size), columns)
        except Exception as exc:  # it goes to the main process, which raises it
            try:
                data = pickle.dumps(exc)
            except Exception:  # an exception that does not pickle
                data = pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
            rows = -1
        _write(results, _HEADER.pack(len(data), rows), data)


def _read(fd: int, size: int) -> bytes:
    """Return exactly ``size`` bytes read from ``fd``; raise EOFError at its end before."""
    first = os.read(fd, size)
    if len(first) == size:
        return first
    buffer = bytearray(size)
    buffer[: len(first)] = first
    view = memoryview(buffer)
    got = len(first)
    while got < size:
        count = os.readv(fd, [view[got:]])
        if not count:
            raise EOFError
        got += count
    return bytes(buffer)


def _write(fd: int, header: bytes, data: bytes) -> None:
    """Write ``header`` and ``data`` whole to ``fd``."""
    sent = os.writev(fd, [header, data])
    view = memoryview(data)
    while sent < len(header) + len(data):
        sent += os.write(fd, view[sent - len(header) :])


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
