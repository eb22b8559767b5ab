"""Fixtures of the backup tests: a real S3-protocol server (moto) on loopback.

Every test gets fresh buckets on one moto server started for the session, and AWS
settings of its own: fixed test credentials, no profile, no instance metadata lookups.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from backup_support import ACCESS_KEY, SECRET_KEY, Faults, Proxy, free_port, s3_client

from pgwarden.backup.storage import LocalStorage, S3Storage


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Yield the URL of a moto S3 server running in this process, on loopback."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Give every test the same fake credentials and none of the machine's AWS setup."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """Return a boto3 client of the moto server."""
    return s3_client(s3_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    """Return the name of a new, empty bucket."""
    name = f"pgw-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_storage(s3_endpoint: str, bucket: str) -> S3Storage:
    """Return an S3 storage under the prefix ``prod/`` of a new bucket."""
    return S3Storage(bucket, "prod", endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    """Return a local storage in a directory that does not exist yet."""
    return LocalStorage(tmp_path / "backups")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> LocalStorage | S3Storage:
    """Return each kind of storage in turn."""
    return request.getfixturevalue(f"{request.param}_storage")  # type: ignore[no-any-return]


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[tuple[str, Faults]]:
    """Yield the URL of a proxy to moto that injects the faults it is told to, and them."""
    host, port = s3_endpoint.removeprefix("http://").split(":")
    faults = Faults()
    handler = type("Proxy", (Proxy,), {"upstream": (host, int(port)), "faults": faults})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", faults
    server.shutdown()
    server.server_close()
