"""Load the data section of an archive through several psql sessions at once.

``pg_restore --jobs`` gives each table's data to one job, so a database whose rows sit
mostly in one table loads at the speed of one server process, whatever the CPUs. Here
one pg_restore writes the data section as SQL and a splitter shares it among ``sinks``
psql sessions: every table's ``COPY`` rows are cut, at row boundaries, into pieces of
about ``piece_size`` bytes, each sent as a ``COPY`` statement of its own to the session
with the least waiting, so one large table loads on every CPU.

In ``COPY`` text a row ends at each newline (a newline in a value is written ``\\n``)
and the data ends at a line ``\\.``, which no row can be, so rows are cut only at
newlines and no value is parsed or changed on the way.

Every session gets the lines before the first ``COPY`` (pg_restore's settings and
``BEGIN``), and every later ``SET``, ``set_config`` and psql meta-command line;
everything else (sequence values, large objects) goes to the first session, in order.
Each session prints ``COPY n`` per piece; the rows of every table are their sum.

pg_restore's ``COMMIT`` is held back. Once pg_restore has ended well, each session is
sent a query whose answer shows it ran every statement before it without error; only
when every session has answered is ``COMMIT`` sent to all (:meth:`Splitter.finish`).
So a load that fails anywhere, a damaged file, a psql stopped by an error, commits
nothing; only a failure of ``COMMIT`` itself could leave some shares committed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import IO

__all__ = ["PIECE_SIZE", "Splitter"]

PIECE_SIZE = 8 * 1024**2
_READ = 1024**2
_END = b"\\.\n"
_BROADCAST = (b"SET ", b"SELECT pg_catalog.set_config(", b"\\")
_COMMIT = b"COMMIT;"


class _Sink:
    """One psql's stdin, written on a thread of its own from a short queue."""

    def __init__(self, stream: IO[bytes], number: int) -> None:
        self.number = number
        self.tables: list[str | None] = []  # the table of each COPY sent, in order
        self.pending = 0  # bytes queued and not yet written
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(
            target=self._write, args=(stream,), name=f"pgwarden-restore-sink-{number}", daemon=True
        )
        self._thread.start()

    def put(self, data: bytes) -> None:
        """Queue ``data`` to be written (waits while the queue is full)."""
        with self._lock:
            self.pending += len(data)
        self._queue.put(data)

    def close(self) -> None:
        """Close psql's stdin once what is queued is written, and wait for that."""
        self._queue.put(None)
        self._thread.join()

    def _write(self, stream: IO[bytes]) -> None:
        try:
            while (data := self._queue.get()) is not None:
                if self.error is None:
                    try:
                        stream.write(data)
                        stream.flush()
                    except (BrokenPipeError, OSError) as exc:  # psql stopped: it says why
                        self.error = exc
                with self._lock:
                    self.pending -= len(data)
        finally:
            with suppress(BrokenPipeError, OSError):
                stream.close()


class Splitter:
    """Read pg_restore's SQL from ``source`` and share it among psql stdins.

    ``tables`` names the table of each ``COPY`` in the order pg_restore writes them
    (the list's ``TABLE DATA`` entries); :meth:`counts` adds up the ``COPY n`` tags of
    each session (``tags(i)``) by table, or returns ``None`` when they cannot be matched.
    Every psql's stdin stays open until :meth:`finish` or :meth:`abandon`.
    """

    def __init__(
        self,
        source: IO[bytes],
        targets: list[IO[bytes]],
        tables: list[str],
        *,
        piece_size: int | None = None,
    ) -> None:
        self.error: BaseException | None = None
        self._source = source
        self._sinks = [_Sink(target, number) for number, target in enumerate(targets)]
        self._tables = tables
        self._piece = max(1, piece_size or PIECE_SIZE)
        self._buffer = bytearray()
        self._eof = False
        self._copies = 0
        self.held_commit = False
        self._thread = threading.Thread(
            target=self._run, name="pgwarden-restore-split", daemon=True
        )
        self._thread.start()

    @property
    def sink_error(self) -> BaseException | None:
        """Return the first error writing to a psql, if any."""
        return next((sink.error for sink in self._sinks if sink.error is not None), None)

    def wait(self) -> None:
        """Wait until pg_restore's output is read to its end (or the split failed)."""
        self._thread.join()

    def send(self, data: bytes) -> None:
        """Queue ``data`` for every session."""
        for sink in self._sinks:
            sink.put(data)

    def finish(self) -> None:
        """Send the held-back ``COMMIT`` to every session and close their stdins."""
        if self.held_commit:
            self.send(_COMMIT + b"\n")
        self.abandon()

    def abandon(self) -> None:
        """Close every session's stdin without ``COMMIT``: psql ends, nothing committed."""
        for sink in self._sinks:
            sink.close()

    def counts(self, tags: Callable[[int], list[int]]) -> dict[str, int] | None:
        """Return the rows loaded by table, from each session's ``COPY n`` tags."""
        if self._copies != len(self._tables) or len(set(self._tables)) != len(self._tables):
            return None
        loaded = dict.fromkeys(self._tables, 0)
        for sink in self._sinks:
            counted = tags(sink.number)
            if len(counted) != len(sink.tables):
                return None
            for table, rows in zip(sink.tables, counted, strict=True):
                if table is None:
                    return None
                loaded[table] += rows
        return loaded

    def _run(self) -> None:
        try:
            with self._source:
                self._split()
        except BaseException as exc:  # reported by the caller after pg_restore ends
            self.error = exc

    def _split(self) -> None:
        copied = False
        while line := self._line():
            if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
                table = self._tables[self._copies] if self._copies < len(self._tables) else None
                self._copies += 1
                self._copy(line, table)
                copied = True
            elif copied and line.rstrip() == _COMMIT:
                self.held_commit = True
            elif not copied or line.startswith(_BROADCAST):
                self.send(line)
            else:
                self._sinks[0].put(line)

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._source.read(_READ)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if not self._fill():
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def _copy(self, header: bytes, table: str | None) -> None:
        """Share one table's rows, up to its ``\\.`` line, out in pieces."""
        piece = bytearray()
        sent = False
        buffer = self._buffer
        while True:
            if buffer.startswith(_END):  # the buffer always starts at a row's start
                del buffer[: len(_END)]
                break
            end = buffer.find(b"\n" + _END)
            if end >= 0:
                piece += buffer[: end + 1]
                del buffer[: end + 1 + len(_END)]
                break
            last = buffer.rfind(b"\n")
            if last >= 0:
                piece += buffer[: last + 1]
                del buffer[: last + 1]
                if len(piece) >= self._piece:
                    self._send(header, piece, table)
                    piece = bytearray()
                    sent = True
            if not self._fill():
                raise EOFError("pg_restore's output ended inside a COPY")
        if piece or not sent:
            self._send(header, piece, table)

    def _send(self, header: bytes, rows: bytearray, table: str | None) -> None:
        sink = min(self._sinks, key=lambda s: (s.pending, s.number))
        sink.tables.append(table)
        sink.put(header + bytes(rows) + _END)
