"""The restore prefetch stays a bounded number of segments ahead of what recovery asked for."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pitr_support import fake_segment

from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.wal import WalPrefetch, list_wal, push_wal
from pgwarden.backup.wal.archive import read_wal
from pgwarden.backup.wal.names import segment_name

AHEAD = 4


def test_a_long_range_is_restored_with_few_segments_staged(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    for number in range(1, 41):
        name = segment_name(1, number)
        push_wal(storage, fake_segment(tmp_path / name, fill=bytes([number])))
    items = list_wal(storage)
    spool = tmp_path / "spool"
    staged: list[int] = []
    prefetch = WalPrefetch(
        storage, items, spool, ahead=AHEAD,
        on_fetched=lambda _: staged.append(len(prefetch.staged())),
    )  # fmt: skip
    prefetch.start()
    try:
        # The restore script, run as PostgreSQL runs it: one file at a time, in order.
        for item in items:
            target = tmp_path / "RECOVERYXLOG"
            done = subprocess.run(
                [str(prefetch.script), item.name, str(target)], capture_output=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert target.read_bytes() == read_wal(storage, item, keyring=None)
            staged.append(len(prefetch.staged()))
        # A segment asked for again, after it was handed over and removed, comes again.
        again = subprocess.run(
            [str(prefetch.script), items[5].name, str(tmp_path / "again")], timeout=60
        )
        assert again.returncode == 0
        assert (tmp_path / "again").read_bytes() == read_wal(storage, items[5], keyring=None)
        # A name outside the plan is "not in the archive" at once.
        absent = subprocess.run(
            [str(prefetch.script), segment_name(1, 99), str(tmp_path / "x")], timeout=10
        )
        assert absent.returncode == 1
    finally:
        prefetch.close()
    assert prefetch.error is None
    assert len(staged) > len(items) and max(staged) <= AHEAD + 1  # and the one being handed over
    assert prefetch.staged() == []
