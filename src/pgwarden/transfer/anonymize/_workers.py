"""A pool of forked processes for CPU-bound work on bytes: the transform's workers.

The export's transform is CPU-bound Python and numpy; a machine's other CPUs take it in
forked processes (:class:`WorkerPool`), fed and read through pipes so the process that
reads the rows and writes the file spends as little as it can on handing them over.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress

from pgwarden.errors import PgwardenError

__all__ = ["Work", "WorkerPool"]

# A task's function: bytes in; bytes and a count (the rows, for the rewrite) out.
Work = Callable[[bytes], tuple[bytes, int]]


class WorkerPool:
    """Forked processes running one function on tasks of bytes, results in order.

    Forked, so the workers inherit the function (the compiled transforms are closures,
    which do not pickle). A task goes to each worker in turn, down a pipe of its own, as
    a length and the bytes; the result comes back the same way. So results come back in
    order by reading the workers in turn, nothing is pickled (but an exception) and no
    thread hands anything on: the main process's cost is copying a task into a pipe and
    its result out of one. A worker is given its next task once its last result is
    read, so neither side can block writing to the other. Unlike ``multiprocessing``'s
    pools, it also runs inside a daemonic process (a Celery prefork worker).
    """

    TASK = 1 << 20  # bytes a task: smaller ones cost more in handoffs

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.pending: deque[_Worker] = deque()  # in the order the tasks were given
        self.turn = 0
        self.gathered: list[bytes] = []
        self.gathered_size = 0

    @classmethod
    def start(cls, work: Work, workers: int | None) -> WorkerPool | None:
        """Return a pool of ``workers`` processes running ``work``, or ``None`` for fewer than two.

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
                started.append(_Worker.fork(work, started))
        except BaseException:
            for worker in started:
                worker.stop()
            raise
        return cls(started)

    def submit(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """Take ``chunk``; return the results that must be taken now, in order.

        Chunks gather into tasks of about :attr:`TASK` bytes: ``work`` must take the
        concatenation of chunks as it takes each.
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
        while worker in self.pending:  # its result is the oldest still pending
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
    """One forked process running the tasks it reads from a pipe (see :class:`WorkerPool`)."""

    def __init__(self, pid: int, tasks: int, results: int) -> None:
        self.pid = pid
        self.tasks = tasks  # the write end of the worker's task pipe
        self.results = results  # the read end of its result pipe

    @classmethod
    def fork(cls, work: Work, siblings: Sequence[_Worker]) -> _Worker:
        """Start a worker running ``work``; ``siblings`` are the pool's others."""
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        resize: int = getattr(fcntl, "F_SETPIPE_SZ", 0)  # Linux: fewer, larger reads and writes
        for end in (task_write, result_write) if resize else ():
            with suppress(OSError):
                fcntl.fcntl(end, resize, WorkerPool.TASK)
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
                _serve(task_read, result_write, work)
                code = 0
            finally:
                os._exit(code)
        os.close(task_read)
        os.close(result_write)
        return cls(pid, task_write, result_read)

    def send(self, task: bytes) -> None:
        """Give the worker ``task`` (its last result must have been read)."""
        try:
            _write(self.tasks, _HEADER.pack(len(task), 0), task)
        except BrokenPipeError:
            raise self.died() from None

    def result(self) -> tuple[bytes, int]:
        """Wait for the result of the worker's task; raise what the task raised."""
        try:
            size, rows = _HEADER.unpack(_read(self.results, _HEADER.size))
            data = _read(self.results, size)
        except EOFError:
            raise self.died() from None
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


def _serve(tasks: int, results: int, work: Work) -> None:
    """Run ``work`` on each task read from ``tasks``; write its result to ``results``, to EOF."""
    while True:
        try:
            size, _ = _HEADER.unpack(_read(tasks, _HEADER.size))
        except EOFError:
            return
        try:
            data, rows = work(_read(tasks, size))
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
