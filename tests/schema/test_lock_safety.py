"""An upgrade blocked behind a held lock gives up, retries, and never stalls the readers.

A session holds a lock on the table (an open transaction that read it); the upgrade's
ALTER TABLE queues for ACCESS EXCLUSIVE, and every reader arriving after it queues
behind it. With ``lock_timeout`` the ALTER gives up, its transaction rolls back, the
readers go on, and the revision is tried again. A third session measures how long its
reads were held up: about ``lock_timeout`` at most, never the seconds the lock is held.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgwarden.db.engines import create_engine
from pgwarden.schema import MigrationLockTimeout, MigrationProgress, status, upgrade
from schema_support import execute, sync_env

LOCK_TIMEOUT = 0.5
HELD = 8.0  # the lock is held this long: a reader stuck behind the ALTER would wait it out
MARGIN = 2.5  # generous: a loaded machine stretches every wait


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> Path:
    execute(
        pg_url,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, name text)",
        "INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 100) AS g",
    )
    return sync_env(
        tmp_path / "migrations",
        {
            "0001": (
                None,
                "op.add_column('accounts', sa.Column('email', sa.Text()))",
                "op.drop_column('accounts', 'email')",
            )
        },
    )


class _Reader(threading.Thread):
    """Read the table again and again from its own session; keep the longest wait."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url, poolclass=sa.pool.NullPool)
        self.longest = 0.0
        self.reads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one()
                conn.commit()
                self.longest = max(self.longest, time.monotonic() - started)
                self.reads += 1
                time.sleep(0.02)
        self.engine.dispose()


def _hold_lock(url: str, seconds: float, release: threading.Event) -> threading.Thread:
    """Hold ACCESS SHARE on accounts (an open transaction that read it) for ``seconds``.

    Returns once the lock is held; ``release`` ends the hold sooner.
    """
    holding = threading.Event()

    def hold() -> None:
        engine = create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one()
            holding.set()
            release.wait(seconds)
            conn.rollback()
        engine.dispose()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert holding.wait(30)
    return thread


def _has_email(url: str) -> bool:
    rows = execute(
        url,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'accounts' AND column_name = 'email'",
    )
    return bool(rows[0][0])


def test_a_blocked_upgrade_retries_until_the_lock_is_free_and_readers_go_on(
    env: Path, pg_url: str
) -> None:
    holder = _hold_lock(pg_url, HELD, threading.Event())
    reader = _Reader(pg_url)
    reader.start()
    events: list[MigrationProgress] = []
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = upgrade(
                conn,
                config=env,
                backup=False,
                lock_timeout=LOCK_TIMEOUT,
                retries=20,
                retry_delay=0.3,
                max_retry_delay=0.6,
                on_progress=events.append,
            )
    finally:
        reader.stop.set()
        reader.join(30)
        holder.join(30)
        engine.dispose()
    (applied,) = result.applied
    assert applied.revision == "0001" and applied.attempts > 1
    assert any(e.kind == "retry" for e in events)
    assert _has_email(pg_url)
    assert reader.reads > 10
    # Held up by each try for about lock_timeout, never for the seconds the lock was held.
    assert reader.longest < LOCK_TIMEOUT + MARGIN < HELD


def test_an_upgrade_that_never_gets_its_lock_fails_cleanly_and_changes_nothing(
    env: Path, pg_url: str
) -> None:
    release = threading.Event()
    holder = _hold_lock(pg_url, HELD, release)
    engine = create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn, pytest.raises(MigrationLockTimeout) as caught:
            upgrade(conn, config=env, backup=False, lock_timeout=0.2, retries=1, retry_delay=0.1)
        assert "insight locks" in (caught.value.hint or "")
        with engine.connect() as conn:
            assert status(conn, config=env).current == ()
    finally:
        release.set()
        holder.join(30)
        engine.dispose()
    assert not _has_email(pg_url)
