"""S3 storage against real S3-protocol servers on loopback (moto), faults injected."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from backup_support import ACCESS_KEY, SECRET_KEY, Faults, free_port, s3_client

from pgwarden.backup.errors import ObjectNotFound, StorageError, StorageUnusable
from pgwarden.backup.storage import S3Storage
from pgwarden.backup.storage._retry import Backoff
from pgwarden.backup.storage.s3 import MIN_PART_SIZE, part_size_for
from pgwarden.errors import ConfigError

MiB = 1024 * 1024


def pattern(size: int, seed: int = 0) -> Iterator[bytes]:
    """Yield ``size`` deterministic pseudo-random bytes in uneven chunks."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    sent = 0
    step = 1
    while sent < size:
        piece = block[: min(len(block) - step, size - sent)]
        yield piece
        sent += len(piece)
        step = step % 1000 + 37


def digest(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


class Recorder:
    """Record the waits a Backoff asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_multipart_round_trip(s3_storage: S3Storage, s3: Any) -> None:
    size = 20 * MiB + 12345
    info = s3_storage.write("base/1/data.dump", pattern(size))

    assert info.size == size
    assert info.etag is not None and info.etag.endswith("-3")  # parts of 8, 8 and 4 MiB
    head = s3.head_object(Bucket=s3_storage.bucket, Key="prod/base/1/data.dump")
    assert head["ContentLength"] == size
    assert digest(s3_storage.read_chunks("base/1/data.dump")) == digest(pattern(size))
    assert s3.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", []) == []


def test_small_object_is_one_put(s3_storage: S3Storage) -> None:
    info = s3_storage.write("small", pattern(MIN_PART_SIZE - 1))
    assert info.etag is not None and "-" not in info.etag


def test_failure_mid_stream_aborts_the_upload(s3_storage: S3Storage, s3: Any) -> None:
    def source() -> Iterator[bytes]:
        yield from pattern(17 * MiB)  # two parts uploaded
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError, match="pg_dump died"):
        s3_storage.write("base/2/data.dump", source())
    assert s3.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=s3_storage.bucket).get("KeyCount") == 0
    assert not s3_storage.exists("base/2/data.dump")


def test_part_sizes_grow_to_fit_the_part_limit() -> None:
    assert part_size_for(1) == part_size_for(1000) == 8 * MiB
    assert part_size_for(1001) == 16 * MiB
    total = sum(part_size_for(n) for n in range(1, 10_001))
    assert total > 5 * 1024**4  # S3's largest object fits in 10,000 parts
    assert max(part_size_for(n) for n in range(1, 10_001)) <= 5 * 1024**3


def test_part_upload_is_retried_with_backoff(
    s3_proxy: tuple[str, Faults], bucket: str, s3: Any
) -> None:
    url, faults = s3_proxy
    failures = {"left": 2}

    def rule(method: str, path: str) -> str | None:
        if method == "PUT" and "partNumber=2" in path and failures["left"]:
            failures["left"] -= 1
            return "503"
        return None

    faults.rule = rule
    sleeps = Recorder()
    storage = S3Storage(
        bucket,
        endpoint_url=url,
        max_attempts=1,  # botocore gives up at once: the retries seen are pgwarden's
        backoff=Backoff(attempts=4, base=0.5, sleep=sleeps),
    )
    storage.write("retried", pattern(17 * MiB, seed=2))

    part_twos = [r for r in faults.requests if r[0] == "PUT" and "partNumber=2" in r[1]]
    assert len(part_twos) == 3
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= 0.5 and 0 <= sleeps.waits[1] <= 1.0
    assert digest(storage.read_chunks("retried")) == digest(pattern(17 * MiB, seed=2))


def test_part_upload_gives_up_and_aborts(
    s3_proxy: tuple[str, Faults], bucket: str, s3: Any
) -> None:
    url, faults = s3_proxy
    faults.rule = lambda method, path: "503" if "partNumber=2" in path else None
    storage = S3Storage(
        bucket, endpoint_url=url, max_attempts=1, backoff=Backoff(attempts=3, sleep=Recorder())
    )
    with pytest.raises(StorageError, match="ServiceUnavailable") as raised:
        storage.write("doomed", pattern(17 * MiB))
    assert raised.value.exit_code == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not storage.exists("doomed")


def test_read_resumes_where_the_connection_broke(s3_proxy: tuple[str, Faults], bucket: str) -> None:
    url, faults = s3_proxy
    storage = S3Storage(bucket, endpoint_url=url, backoff=Backoff(sleep=Recorder()))
    storage.write("big", pattern(3 * MiB, seed=3))
    cuts = {"left": 1}

    def rule(method: str, path: str) -> str | None:
        if method == "GET" and path.startswith(f"/{bucket}/big") and cuts["left"]:
            cuts["left"] -= 1
            return "cut"
        return None

    faults.rule = rule
    assert digest(storage.read_chunks("big")) == digest(pattern(3 * MiB, seed=3))
    gets = [r for r in faults.requests if r[0] == "GET" and r[1].startswith(f"/{bucket}/big")]
    assert len(gets) == 2
    assert "Range" not in gets[0][2] and gets[1][2]["Range"].startswith("bytes=")
    assert gets[1][2]["Range"] != "bytes=0-"


def test_object_replaced_while_read_is_an_error(s3_storage: S3Storage) -> None:
    s3_storage.write("k", pattern(3 * MiB))
    with s3_storage.open("k") as handle:
        handle.read(10)
        s3_storage.write_bytes("k", b"replaced")
        handle.raw._drop()  # type: ignore[attr-defined] # as if the connection broke
        with pytest.raises(StorageError, match="was replaced while it was being read"):
            handle.read()


def test_missing_bucket(s3_endpoint: str) -> None:
    storage = S3Storage("pgw-no-such-bucket", "x", endpoint_url=s3_endpoint)
    for action in (
        lambda: storage.write_bytes("k", b"v"),
        lambda: storage.write("k", pattern(9 * MiB)),
        lambda: storage.stat("k"),
        lambda: list(storage.list()),
        storage.check,
    ):
        with pytest.raises(StorageUnusable, match="bucket 'pgw-no-such-bucket' does not exist"):
            action()


def test_missing_key(s3_storage: S3Storage) -> None:
    with pytest.raises(ObjectNotFound, match="no object 'nope'") as raised:
        s3_storage.open("nope")
    assert raised.value.exit_code == 1
    with pytest.raises(ObjectNotFound):
        s3_storage.read_versioned("nope")


def test_unreachable_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage("bucket", endpoint_url=endpoint, max_attempts=1, connect_timeout=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageUnusable) as raised:
        storage.check()
    error = raised.value
    assert f"the S3 endpoint {endpoint} cannot be reached" in error.message
    assert error.exit_code == 2 and "endpoint URL" in (error.hint or "")
    _assert_no_secret(f"{error} {error.hint}", caplog.text)


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert ACCESS_KEY not in text


# -- a server that checks credentials ----------------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[tuple[str, dict[str, str]]]:
    """Yield a moto server that checks signatures, and working credentials for it.

    moto accepts any credentials unless INITIAL_NO_AUTH_ACTION_COUNT is set, which is
    process-wide; so this one runs in its own process, and its first four requests
    (unchecked) create an IAM user, its key, its policy and a bucket.
    """
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        iam.create_user(UserName="backup")
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(policy))
        s3_client(endpoint).create_bucket(Bucket="secured")
        yield endpoint, {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        process.kill()
        process.wait()


def test_credentials_accepted(
    auth_server: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, key = auth_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["secret"])
    storage = S3Storage("secured", "p", endpoint_url=endpoint)
    storage.check()
    storage.write_bytes("k", b"v")
    assert storage.read_bytes("k") == b"v"


@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_credentials_refused(
    auth_server: tuple[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    wrong: str,
) -> None:
    endpoint, key = auth_server
    key_id = key["id"] if wrong == "secret" else "AKIAPGWARDENUNKNOWN0"
    secret = "wrong/secret/pgwarden/0123456789abcdefghijk"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage = S3Storage("secured", "p", endpoint_url=endpoint, max_attempts=1)
    expected = "SignatureDoesNotMatch" if wrong == "secret" else "InvalidAccessKeyId"
    with caplog.at_level(logging.DEBUG):
        for action in (storage.check, lambda: storage.write_bytes("k", b"v")):
            with pytest.raises(StorageUnusable, match=f"refused the credentials .{expected}"):
                action()
        with pytest.raises(StorageUnusable, match=r"access denied \(403\)") as raised:
            storage.stat("k")  # a HEAD: the server cannot say more than 403
    error = raised.value
    assert error.exit_code == 2 and "AWS_ACCESS_KEY_ID" in (error.hint or "")
    for text in (str(error), error.hint or "", caplog.text):
        assert secret not in text and key_id not in text and key["secret"] not in text


def test_unknown_profile_and_bad_endpoint() -> None:
    with pytest.raises(StorageUnusable, match="nope") as raised:
        S3Storage("bucket", profile="nope")
    assert "profile" in (raised.value.hint or "")
    with pytest.raises(ConfigError, match="is not a URL"):
        S3Storage("bucket", endpoint_url="not a url")
