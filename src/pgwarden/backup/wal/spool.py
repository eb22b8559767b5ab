"""Move WAL between PostgreSQL and storage through a local spool, without a Python start per file.

PostgreSQL runs ``archive_command`` once per segment, one at a time; starting Python (and
opening storage) each time caps archiving at a few segments a second. Here the two
commands PostgreSQL runs are small shell scripts that pgwarden writes into the spool,
and one long-lived pgwarden process does the uploads and downloads, in parallel:

- archiving: ``archive-wal %p %f`` copies the segment into ``ready/`` and waits until
  :func:`run_archiver` has pushed it and left ``done/<name>``. Given the data directory,
  the archiver also pushes every segment PostgreSQL has marked ``.ready`` ahead of being
  asked, so that most calls find their ``done`` marker at once and return.
- restoring: ``restore-wal %f %p`` copies a file from ``ready/`` once
  :class:`WalPrefetch` has fetched and checked it; a name not in ``plan`` is "not in
  the archive" at once, as restore_command must say.

Everything the server writes into the spool is checked like any untrusted name.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import (
    DEFAULT_CLUSTER,
    ArchivedWal,
    push_wal,
    read_wal,
    write_atomically,
)
from pgwarden.backup.wal.names import parse_wal_name
from pgwarden.errors import PgwardenError, UserError

__all__ = [
    "ARCHIVE_SCRIPT",
    "RESTORE_SCRIPT",
    "ArchiverStats",
    "WalPrefetch",
    "archive_command",
    "check_spool_path",
    "prepare_spool",
    "run_archiver",
    "served_name",
    "spool_lag",
]

log = logging.getLogger("pgwarden.backup.wal")

ARCHIVE_SCRIPT = "archive-wal"
RESTORE_SCRIPT = "restore-wal"
_WAIT_SECONDS = 300

_ARCHIVE_BODY = f"""#!/bin/sh
# Written by pgwarden: archive_command = '<this file> %p %f'.
# Hands one WAL file to `pgwarden wal archive`, and succeeds once it is in storage.
# A file the archiver is pushing already (working/) is not copied: it is waited for.
spool=$(dirname "$0")
done_file="$spool/done/$2"
ticks=0
while [ ! -f "$done_file" ]; do
    if [ -f "$spool/failed/$2" ]; then
        cat "$spool/failed/$2" >&2
        rm -f "$spool/failed/$2" "$spool/ready/$2"
        exit 1
    fi
    if [ ! -f "$spool/ready/$2" ] && [ ! -f "$spool/working/$2" ]; then
        cp "$1" "$spool/ready/.$2.tmp" && mv "$spool/ready/.$2.tmp" "$spool/ready/$2" || exit 1
    fi
    ticks=$((ticks + 1))
    if [ "$ticks" -ge {_WAIT_SECONDS * 50} ]; then
        echo "pgwarden: $2 not archived within {_WAIT_SECONDS} s;" \\
            "is 'pgwarden wal archive' running?" >&2
        exit 1
    fi
    sleep 0.02
done
rm -f "$done_file"
exit 0
"""

_RESTORE_BODY = """#!/bin/sh
# Written by pgwarden: restore_command = '<this file> %f %p'.
# Gives PostgreSQL the WAL files pgwarden fetches and checks; others are not archived.
# A segment is removed once handed over, so the spool holds only the few fetched ahead.
spool=$(dirname "$0")
grep -qxF "$1" "$spool/plan" || exit 1
rm -f "$spool/taken/$1"
: > "$spool/wanted/$1"
until [ -f "$spool/ready/$1" ] && cp "$spool/ready/$1" "$2" 2>/dev/null; do
    [ -f "$spool/failed" ] && exit 1
    sleep 0.02
done
: > "$spool/taken/$1"
case "$1" in *.history) ;; *) rm -f "$spool/ready/$1" ;; esac
rm -f "$spool/wanted/$1"
exit 0
"""


def check_spool_path(spool: Path) -> Path:
    """Return ``spool`` made absolute, if the server's shell may be given its path.

    PostgreSQL hands archive_command and restore_command to ``sh``: a quote, ``$``, a
    backtick, a backslash or a control character in the path is refused.
    """
    spool = spool.absolute()
    if any(c in str(spool) for c in "\"'$`\\%") or any(ord(c) < 32 for c in str(spool)):
        raise UserError(
            f"the spool directory {str(spool)!r} holds a quote, $, `, \\, % or a control "
            "character, which the server's shell would read.",
            hint="Choose a plain path such as /var/lib/pgwarden/spool.",
        )
    return spool


def prepare_spool(spool: Path, *, restore: bool = False, owner: str | None = None) -> Path:
    """Create the spool directories and its script; return the script's path.

    ``owner`` is the system user PostgreSQL runs as, when it is not this one: it gets the
    directories it writes into.
    """
    spool = check_spool_path(spool)
    spool.mkdir(parents=True, exist_ok=True, mode=0o755)
    os.chmod(spool, 0o755)  # noqa: S103 - the server's user runs the script in it
    folders = ["ready", "wanted", "taken"] if restore else ["ready", "done", "failed", "working"]
    for folder in folders:
        (spool / folder).mkdir(exist_ok=True, mode=0o755)
    script = spool / (RESTORE_SCRIPT if restore else ARCHIVE_SCRIPT)
    script.write_text(_RESTORE_BODY if restore else _ARCHIVE_BODY)
    script.chmod(0o755)
    if owner is not None:
        from pgwarden.db._serviceuser import hand_over

        hand_over([spool / folder for folder in folders], owner)
    return script


def archive_command(spool: Path) -> str:
    """Return the archive_command that hands segments to the archiver of ``spool``."""
    return f'"{check_spool_path(spool) / ARCHIVE_SCRIPT}" %p %f'


@dataclass
class ArchiverStats:
    """What an archiver did: files pushed, found archived already, failed; bytes read."""

    pushed: int = 0
    already: int = 0
    failed: int = 0
    bytes: int = 0


def _names(folder: Path, suffix: str = "") -> list[str]:
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        if entry.startswith(".") or not entry.endswith(suffix):
            continue
        name = entry.removesuffix(suffix) if suffix else entry
        try:
            parse_wal_name(name)
        except UserError:
            log.warning("ignored %s in %s: not a WAL file name", entry, folder)
            continue
        names.append(name)
    return sorted(names)


def run_archiver(
    storage: Storage,
    spool: Path,
    *,
    cluster: str = DEFAULT_CLUSTER,
    keyring: BackupKeyring | None = None,
    data_dir: Path | None = None,
    workers: int = 4,
    stop: threading.Event | None = None,
    once: bool = False,
    poll: float = 0.02,
) -> ArchiverStats:
    """Push what the spool holds (and, given ``data_dir``, what is ready there) until ``stop``.

    ``once`` returns when nothing is left to push. A file that cannot be archived (a
    conflict) gets ``failed/<name>``, which the archive script reports to PostgreSQL.
    """
    stop = stop or threading.Event()
    stats = ArchiverStats()
    lock = threading.Lock()
    running: dict[str, Future[None]] = {}
    # Pushed ahead lately: PostgreSQL marks such a file done only after its archive
    # command ran, so until then it still looks ready; it is not pushed twice.
    recent: dict[str, float] = {}

    def push(name: str, path: Path, ahead: bool) -> None:
        with lock:
            pushed_ahead = name in recent
        if not ahead and pushed_ahead:  # the same segment, pushed from pg_wal already
            write_atomically(spool / "done" / name, b"")
            path.unlink(missing_ok=True)
            return
        working = spool / "working" / name
        if ahead:
            working.touch()
        try:
            push_file(name, path, ahead)
        finally:
            working.unlink(missing_ok=True)

    def push_file(name: str, path: Path, ahead: bool) -> None:
        try:
            result = push_wal(storage, path, name=name, cluster=cluster, keyring=keyring)
        except Exception as exc:  # one file's failure must not stop the others
            if not path.exists():
                return  # pushed by another job meanwhile, which took the file away
            message = exc.message if isinstance(exc, PgwardenError) else repr(exc)
            with lock:
                stats.failed += 1
            log.error("cannot archive %s: %s", name, message)
            if not ahead:
                write_atomically(spool / "failed" / name, f"pgwarden: {message}\n".encode())
            return
        with lock:
            stats.already += result.already_archived
            stats.pushed += not result.already_archived
            stats.bytes += result.size
        if ahead:
            with lock:
                recent[name] = time.monotonic()
        write_atomically(spool / "done" / name, result.key.encode())
        if not ahead:
            (spool / "ready" / name).unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pgwarden-wal") as pool:
        while not stop.is_set():
            for name in [n for n, f in running.items() if f.done()]:
                running.pop(name).result()
            jobs = [(n, spool / "ready" / n, False) for n in _names(spool / "ready")]
            if data_dir is not None:
                status = data_dir / "pg_wal" / "archive_status"
                done = set(_names(spool / "done"))
                with lock:
                    for name in [n for n, t in recent.items() if time.monotonic() - t > 600]:
                        del recent[name]
                    done.update(recent)
                jobs += [
                    (n, data_dir / "pg_wal" / n, True)
                    for n in _names(status, ".ready")
                    if n not in done
                ]
            # One job per name (a file both handed over and ready in pg_wal is pushed once),
            # those PostgreSQL waits for first, then the oldest first.
            unique = {job[0]: job for job in reversed(jobs) if job[0] not in running}
            fresh = sorted(unique.values(), key=lambda job: (job[2], job[0]))
            for name, path, ahead in fresh:
                running[name] = pool.submit(push, name, path, ahead)
            if not fresh and not running and once:
                break
            if not fresh:
                stop.wait(poll)
        for future in running.values():
            future.result()
    return stats


def spool_lag(spool: Path) -> float:
    """Return the age in seconds of the oldest file waiting in the spool, 0 if none."""
    ages = []
    now = time.time()
    for name in _names(spool / "ready"):
        try:
            ages.append(now - (spool / "ready" / name).stat().st_mtime)
        except FileNotFoundError:
            continue
    return max(ages, default=0.0)


class WalPrefetch:
    """Fetch the WAL files of a restore into a spool, in order, a bounded number ahead.

    Start it before the server: the restore script hands PostgreSQL each file as soon as
    it is fetched and checked, and removes it then. At most ``ahead`` segments wait in
    the spool (``ahead`` times the segment size on disk), counted from the newest one
    PostgreSQL has asked for, besides the one being handed over; a file asked for again
    is fetched again.
    """

    def __init__(
        self,
        storage: Storage,
        items: Iterable[ArchivedWal],
        spool: Path,
        *,
        keyring: BackupKeyring | None = None,
        workers: int = 4,
        ahead: int = 16,
        on_fetched: Callable[[ArchivedWal], None] | None = None,
    ) -> None:
        self.storage = storage
        self.items = list(items)
        self.spool = spool
        self.keyring = keyring
        self.ahead = max(1, ahead)
        self.error: PgwardenError | None = None
        self._on_fetched = on_fetched
        self._workers = workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        from pgwarden.db._serviceuser import service_user

        # The server's user marks what it asks for and removes what it took.
        self.script = prepare_spool(spool, restore=True, owner=service_user())
        # PostgreSQL asks for a segment by its own name: a partial one is served as it.
        self._served = [served_name(item) for item in self.items]
        (spool / "plan").write_text("".join(f"{name}\n" for name in self._served))

    def start(self) -> None:
        """Start fetching, oldest first, in a thread of its own."""
        self._thread = threading.Thread(target=self._run, name="pgwarden-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = {name: i for i, name in enumerate(self._served)}
        segments = [i for i, item in enumerate(self.items) if item.wal.kind != "history"]
        history = [i for i, item in enumerate(self.items) if item.wal.kind == "history"]
        running: dict[int, Future[None]] = {}
        fetched: set[int] = set()
        position = -1  # the newest segment PostgreSQL has asked for, by its place in order
        with ThreadPoolExecutor(self._workers, thread_name_prefix="pgwarden-fetch") as pool:
            for i in history:  # small, asked for first and again
                running[i] = pool.submit(self._fetch, self.items[i], self._served[i])
            while not self._stop.is_set() and self.error is None:
                for i in [i for i, future in running.items() if future.done()]:
                    running.pop(i)
                    fetched.add(i)
                wanted = [index[n] for n in _names(self.spool / "wanted") if n in index]
                missing = [
                    i for i in wanted
                    if not (self.spool / "ready" / self._served[i]).exists()
                ]  # fmt: skip
                # Read after the check above: the script marks a file taken before removing it.
                taken = {index[n] for n in _names(self.spool / "taken") if n in index}
                position = max([position, *wanted, *taken])
                again = [i for i in missing if i not in taken and i not in running]
                first = bisect.bisect_right(segments, position)
                window = [
                    i for i in segments[first : first + self.ahead]
                    if i not in fetched and i not in running
                ]  # fmt: skip
                for i in [*again, *window]:
                    if i not in running:
                        running[i] = pool.submit(self._fetch, self.items[i], self._served[i])
                # Behind recovery and not asked for (the old timeline's copy of the segment
                # where a new one forks): removed; asked for later, it is fetched again.
                for name in self.staged():
                    i = index.get(name, -1)
                    if 0 <= i < position and i not in wanted and i not in running:
                        (self.spool / "ready" / name).unlink(missing_ok=True)
                self._stop.wait(0.02)

    def _fetch(self, item: ArchivedWal, served: str) -> None:
        if self.error is not None:
            return
        try:
            data = read_wal(self.storage, item, keyring=self.keyring)
            write_atomically(self.spool / "ready" / served, data)
        except PgwardenError as exc:
            self.error = exc
            (self.spool / "failed").write_text(exc.message + "\n")
            log.error("%s", exc.message)
            return
        if self._on_fetched is not None:
            self._on_fetched(item)

    def staged(self) -> list[str]:
        """Return the segments fetched and waiting in the spool (history files aside)."""
        return [n for n in _names(self.spool / "ready") if not n.endswith(".history")]

    def close(self) -> None:
        """Stop fetching (what is running finishes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def served_name(item: ArchivedWal) -> str:
    """Return the name PostgreSQL asks for ``item`` by: a partial segment's own name."""
    return item.name.removesuffix(".partial") if item.wal.kind == "partial" else item.name
