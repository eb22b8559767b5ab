"""Run a fleet for real: a config file, worker and beat processes, a webhook receiver."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pgwarden.tasks import catalogue
from pgwarden.testing.redis_server import start_redis
from pgwarden.testing.servers import TestServer

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
_REDIS: list[str] = []
AMQP_URL = "amqp://guest@127.0.0.1:5672//"


def reachable(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def redis_url() -> str:
    """Return PGWARDEN_TEST_REDIS_URL, or a Redis started from the wheel for this session."""
    given = os.environ.get("PGWARDEN_TEST_REDIS_URL")
    if given:
        return given
    if not _REDIS:
        stack = contextlib.ExitStack()
        _REDIS.append(stack.enter_context(start_redis()))
        atexit.register(stack.close)
    return _REDIS[0]


def broker_for(kind: str, server: TestServer, env: dict[str, str]) -> str:
    """Return the [tasks] lines naming a broker of ``kind``; skip if it is not running here."""
    if kind == "postgresql":
        name = server.create_database()
        env["FLEET_BROKER_URL"] = server.url(name)
        return 'broker_env = "FLEET_BROKER_URL"'
    if kind == "redis":
        return f'broker = "{redis_url()}"\nvisibility_timeout = "20s"'
    if not reachable("127.0.0.1", 5672):
        pytest.skip("no RabbitMQ server on 127.0.0.1:5672 (the PostgreSQL broker is tested)")
    env["FLEET_BROKER_PASSWORD"] = "guest"
    return f'broker = "{AMQP_URL}"\nbroker_password_env = "FLEET_BROKER_PASSWORD"'


class Webhook:
    """An HTTP server on loopback keeping the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_left = 0
        received, owner = self.received, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.failures_left > 0:
                    owner.failures_left -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def keys(self) -> list[tuple[str, str, str]]:
        return [(a["target"], a["key"], a["state"]) for a in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Fleet:
    """A config file, the environment holding its secrets, and the processes running it."""

    directory: Path
    env: dict[str, str]
    catalogue_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.directory / "pgwarden.toml"

    def write(self, text: str) -> None:
        # Write then rename: beat must never read half a file.
        partial = self.directory / "pgwarden.toml.part"
        partial.write_text(text)
        partial.replace(self.config)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``pgwarden --config ... ARGS`` as a process group of its own."""
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [PGWARDEN, "--config", str(self.config), *args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--concurrency", "1", "--name", f"{name}@fleet")

    def kill(self, name: str) -> None:
        """Kill the process group of ``name`` with SIGKILL, as a host that dies would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop each process as an operator would (SIGTERM to it), then its whole group."""
        # SIGTERM to the group would also reach the pool's children directly, which
        # can leave billiard's pool waiting for ever at exit.
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        for name, process in list(self.processes.items()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind
            process.wait(timeout=30)
            del self.processes[name]

    def logs(self) -> str:
        parts = []
        for path in sorted(self.directory.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.name} (last 40 lines)\n" + "\n".join(lines[-40:]))
        return "\n".join(parts)

    def runs(self, **filters: Any) -> list[catalogue.JobRun]:
        try:
            with catalogue.catalogue(self.catalogue_url) as conn:
                return catalogue.runs(conn, limit=10_000, **filters)
        except Exception:  # the first worker has not created the tables yet
            return []

    def wait(self, condition: Any, *, timeout: float, why: str) -> None:
        """Poll ``condition()`` every second; fail with the processes' logs on timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else "timed out"
                pytest.fail(f"{reason} waiting for {why}\n{self.logs()}")
            time.sleep(1.0)


@contextlib.contextmanager
def running_fleet(directory: Path, env: dict[str, str], catalogue_url: str) -> Iterator[Fleet]:
    fleet = Fleet(directory, env, catalogue_url)
    try:
        yield fleet
    finally:
        fleet.stop()
        catalogue.dispose_engines()


def queue_name() -> str:
    return f"pgwarden-test-{secrets.token_hex(4)}"
