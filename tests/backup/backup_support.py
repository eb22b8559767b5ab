"""Helpers of the backup tests: fake credentials, free ports, a fault-injecting proxy."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

ACCESS_KEY = "AKIAPGWARDENTEST0001"
SECRET_KEY = "pgwarden/test/secret/do-not-print-0123456789"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def s3_client(endpoint: str) -> Any:
    """Return a plain boto3 client of ``endpoint``, to set up and inspect buckets."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


# -- a fault-injecting HTTP proxy in front of moto ----------------------------------


@dataclass
class Faults:
    """Say which requests the proxy breaks, and record what passed through it.

    ``rule(method, path)`` returns ``"503"`` to answer with a ServiceUnavailable
    error, ``"lost"`` to pass the request on but answer 503 (the answer was lost),
    ``"cut"`` to send half the response body and drop the connection, or None to pass
    the request through.
    """

    rule: Callable[[str, str], str | None] = lambda method, path: None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
        with self.faults.lock:
            self.faults.requests.append((self.command, self.path, headers))
            fault = self.faults.rule(self.command, self.path)
        if fault == "503":
            self._unavailable()
            return
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            if fault == "lost":
                self._unavailable()
                return
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if fault == "cut" and self.command == "GET" and len(data) > 1:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            connection.close()

    def _unavailable(self) -> None:
        error = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(error)))
        self.end_headers()
        self.wfile.write(error)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
