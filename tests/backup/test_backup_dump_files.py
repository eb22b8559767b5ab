"""A directory-format dump's files are stored as pg_dump writes them, not after the dump.

A file is followed as it grows and finished once no process of the dump holds it
open; the open files are read from the operating system, as for pg_dump's workers.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from pgwarden.backup._dump import FileFollower, held_open
from pgwarden.backup.manifest import StoredFile

# Writes a file in two halves, the second when told to, as one of pg_dump's workers.
WRITER = """
import sys
with open(sys.argv[1], "wb") as handle:
    handle.write(b"a" * 1000)
    handle.flush()
    print("written", flush=True)
    sys.stdin.readline()
    handle.write(b"b" * 1000)
print("closed", flush=True)
sys.stdin.readline()
"""


def test_a_file_is_stored_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "3021.dat"
    received: list[bytes] = []
    first = threading.Event()

    def store(chunks: Iterator[bytes]) -> StoredFile:
        for chunk in chunks:
            received.append(chunk)
            first.set()
        data = b"".join(received)
        return StoredFile(path.name, len(data), "", len(data), "")

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline() == "written\n"
        follower = FileFollower(path, store)
        assert first.wait(10)  # stored before the writer is done
        assert path.name in (held_open(writer.pid) or set())
        writer.stdin.write("go on\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "closed\n"
        assert held_open(writer.pid) == set()
        follower.close()
        follower.join()
    finally:
        writer.kill()
        writer.wait()
    assert follower.error is None and follower.result is not None
    assert b"".join(received) == b"a" * 1000 + b"b" * 1000
    assert follower.result.plain_size == 2000 and not path.exists()


def test_a_failing_store_is_handed_back(tmp_path: Path) -> None:
    path = tmp_path / "toc.dat"
    path.write_bytes(b"x" * 10)

    def store(chunks: Iterator[bytes]) -> StoredFile:
        raise OSError("the disk is full")

    follower = FileFollower(path, store)
    follower.join()
    assert isinstance(follower.error, OSError) and path.exists()
