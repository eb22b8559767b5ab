"""Backup locks in a local directory and in S3, held and left by real processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from backup_support import Faults

from pgwarden.backup.errors import LockHeld, LockLost
from pgwarden.backup.lock import Lock, LockRecord, break_lock, read_lock, stale_reason
from pgwarden.backup.storage import LocalStorage, S3Storage, Storage
from pgwarden.errors import UserError

HOLDER = """
import sys, time
from pgwarden.backup.lock import Lock
from pgwarden.backup.storage import open_storage
lock = Lock(open_storage(sys.argv[1]), "main", purpose="backup")
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def url_of(storage: Storage) -> str:
    if isinstance(storage, LocalStorage):
        return str(storage.root)
    assert isinstance(storage, S3Storage)
    return f"{storage.url}?endpoint_url={storage.endpoint}"


@pytest.fixture
def holder(storage: Storage) -> Iterator[subprocess.Popen[str]]:
    """Yield a process that holds the lock 'main' in ``storage``."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url_of(storage)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == "held\n", process.stderr.read() if process.stderr else ""
        yield process
    finally:
        process.kill()
        process.wait()


def foreign(name: str, *, expires_in: timedelta) -> LockRecord:
    """Return a lock record written by a process on another host."""
    now = datetime.now(UTC)
    return LockRecord(
        name=name,
        purpose="expire",
        host="db-elsewhere",
        pid=4242,
        process_started=1_700_000_000.0,
        started_at=now - timedelta(hours=2),
        heartbeat_at=now + expires_in - timedelta(minutes=5),
        expires_at=now + expires_in,
        token="f" * 32,
    )


def test_second_acquire_fails_naming_the_holder(storage: Storage) -> None:
    first = Lock(storage, "main")
    record = first.acquire()
    assert first.held and read_lock(storage, "main") == record
    with pytest.raises(LockHeld) as raised:
        Lock(storage, "main", purpose="expire").acquire()
    error = raised.value
    assert f"by pid {os.getpid()} on {socket.gethostname()}" in error.message
    assert "cannot start the expire" in error.message and "backup by pid" in error.message
    assert "pgwarden backup unlock main" in (error.hint or "")
    assert Lock(storage, "other").acquire()  # another database's lock is independent
    assert first.release()


def test_live_process_keeps_its_lock(storage: Storage, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockHeld, match=f"backup by pid {holder.pid} on "):
        Lock(storage, "main").acquire()


def test_lock_of_a_killed_process_is_taken_over(
    storage: Storage, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    left = read_lock(storage, "main")
    assert left is not None and left.pid == holder.pid
    assert stale_reason(left) == f"process {holder.pid} on {left.host} has exited"

    with caplog.at_level(logging.WARNING, logger="pgwarden.backup.lock"):
        lock = Lock(storage, "main")
        lock.acquire()
    assert f"took over the stale lock 'main' (backup by pid {holder.pid}" in caplog.text
    current = read_lock(storage, "main")
    assert current is not None and current.pid == os.getpid() and current.token != left.token
    assert lock.release()


def test_reused_pid_is_stale() -> None:
    now = datetime.now(UTC)
    record = LockRecord(
        name="main",
        purpose="backup",
        host=socket.gethostname(),
        pid=os.getpid(),  # alive, but not the process that took the lock
        process_started=psutil.Process().create_time() - 3600,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(hours=1),
        token="0" * 32,
    )
    assert stale_reason(record) == (
        f"process {os.getpid()} on {record.host} has exited (its pid was reused)"
    )


def test_foreign_host_lock_expires_with_its_heartbeat(storage: Storage) -> None:
    storage.create("locks/main.json", foreign("main", expires_in=timedelta(minutes=3)).to_json())
    with pytest.raises(LockHeld, match="expire by pid 4242 on db-elsewhere"):
        Lock(storage, "main").acquire()

    storage.write_bytes(
        "locks/main.json", foreign("main", expires_in=-timedelta(seconds=1)).to_json()
    )
    lock = Lock(storage, "main")
    lock.acquire()
    current = read_lock(storage, "main")
    assert current is not None and current.host == socket.gethostname()
    lock.release()


def test_racing_takers_of_a_stale_lock_one_wins(storage: Storage) -> None:
    storage.create("locks/main.json", foreign("main", expires_in=-timedelta(hours=1)).to_json())
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def take() -> None:
        lock = Lock(storage, "main")
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except LockHeld:
            outcomes.append("held")

    threads = [threading.Thread(target=take) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["held"] * 5 + ["won"]


def test_release_is_idempotent_and_only_by_the_holder(storage: Storage) -> None:
    holder = Lock(storage, "main")
    holder.acquire()
    stranger = Lock(storage, "main")
    assert stranger.release() is False
    assert read_lock(storage, "main") == holder.record
    assert holder.release() is True
    assert holder.release() is False
    assert read_lock(storage, "main") is None


def test_a_holder_that_lost_its_lock_does_not_remove_the_new_one(storage: Storage) -> None:
    first = Lock(storage, "main")
    first.acquire()
    assert break_lock(storage, "main") == first.record  # an operator removes it
    second = Lock(storage, "main")
    second.acquire()
    with pytest.raises(LockLost, match="was taken over or removed"):
        first.refresh()
    assert first.release() is False
    assert read_lock(storage, "main") == second.record
    second.refresh()
    assert second.release() is True


def test_context_manager_heartbeats_and_releases(storage: Storage) -> None:
    with Lock(storage, "main", ttl=timedelta(seconds=0.3)) as lock:
        first = read_lock(storage, "main")
        assert first is not None
        for _ in range(200):  # wait for a heartbeat, however slow the machine
            current = read_lock(storage, "main")
            if current is not None and current.heartbeat_at > first.heartbeat_at:
                break
            time.sleep(0.05)
        assert current is not None and current.token == first.token
        assert current.expires_at > first.expires_at
        lock.check()
    assert read_lock(storage, "main") is None


def test_context_manager_reports_a_lost_lock(storage: Storage) -> None:
    def work() -> None:
        with Lock(storage, "main", ttl=timedelta(seconds=0.3)) as lock:
            break_lock(storage, "main")
            for _ in range(200):  # the next heartbeat finds the lock gone
                if not lock.held:
                    break
                time.sleep(0.05)
            assert not lock.held

    with pytest.raises(LockLost):
        work()
    assert read_lock(storage, "main") is None


def test_unreadable_lock_and_bad_names(storage: Storage) -> None:
    storage.write_bytes("locks/main.json", b"not json")
    with pytest.raises(LockHeld, match="not a pgwarden lock record") as raised:
        Lock(storage, "main").acquire()
    assert "remove" in (raised.value.hint or "")
    for name in ("", "../x", "a/b", ".hidden", "x" * 101):
        with pytest.raises(UserError, match="lock name"):
            Lock(storage, name)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_conditional_writes_whose_answer_was_lost(
    s3_proxy: tuple[str, Faults], bucket: str, method: str
) -> None:
    """botocore retries a write whose answer was lost; the retry's conflict is our own."""
    url, faults = s3_proxy
    storage = S3Storage(bucket, endpoint_url=url)
    lost = {"left": 0}

    def rule(request_method: str, path: str) -> str | None:
        if request_method == method and path.startswith(f"/{bucket}/locks/") and lost["left"]:
            lost["left"] -= 1
            return "lost"
        return None

    faults.rule = rule
    lock = Lock(storage, "main")
    lost["left"] = 1 if method == "PUT" else 0
    lock.acquire()  # create: If-None-Match, answered 412 on the retry
    lost["left"] = 1 if method == "PUT" else 0
    lock.refresh()  # heartbeat: If-Match, answered 412 on the retry
    lost["left"] = 1
    assert lock.held
    assert lock.release()  # conditional delete, answered 404 on the retry
    assert read_lock(storage, "main") is None
    puts = [r for r in faults.requests if r[0] == method and "/locks/" in r[1]]
    assert len(puts) == (4 if method == "PUT" else 2)
