"""Measure WAL archiving and point-in-time restore against their baselines, in one run.

1. Archiving capacity: a backlog of ``--segments`` full WAL segments is left waiting
   (archive_command empty, pgwarden's long-lived archiver, already running, stopped
   meanwhile), then archive_command is set and PostgreSQL's own archiver works through
   it, one command per segment, as in production. Segments per second for
   plain ``cp`` into a directory, pgwarden's spool script with its archiver (into a
   directory and into S3), and ``barman-cloud-wal-archive`` into S3 (when
   ``--barman DIR`` names a virtualenv that has it). S3 is a moto server on loopback.
2. Lag under load: the same load written while archiving runs; the largest age of the
   oldest segment waiting to be archived, and how long after the load everything is in.
3. RTO: a database of ``--size-gb`` GB, a pgwarden base backup and a plain
   ``pg_basebackup`` tar taken together, more writes after them, then pgwarden's restore
   to the latest against the plain tar extracted and its WAL replayed by hand with
   ``cp`` as restore_command.

    .venv/bin/python bench/pitr.py [--segments 64] [--size-gb 1.0] [--barman /opt/venv]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pgwarden.backup._postmaster import own, server_bin_dir, start_server, stop_server
from pgwarden.backup.physical import create_base_backup
from pgwarden.backup.pitr import restore_pitr, stop_restored
from pgwarden.backup.pitr_plan import RecoveryTarget
from pgwarden.backup.pitr_setup import archiving_plan
from pgwarden.backup.storage import LocalStorage, open_storage
from pgwarden.backup.wal import prepare_spool
from pgwarden.backup.wal.spool import archive_command
from pgwarden.db._serviceuser import hand_over, service_user
from pgwarden.db.binaries import find_binary
from pgwarden.db.clients import client_args
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.testing.servers import free_port

PGWARDEN = Path(sys.executable).with_name("pgwarden")
SEGMENT = 16 * 1024 * 1024
KEY_ID, SECRET = "AKIAPGWARDENBENCH001", "bench-secret-not-real"


class Cluster:
    """A scratch cluster and an autocommit engine on it."""

    def __init__(self, work: Path) -> None:
        self.server = EmbeddedServer(work / "data", port=free_port())
        self.server.start()
        url = sa.engine.make_url(self.server.url()).set(drivername="postgresql+psycopg")
        self.engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def sql(self, text: str) -> object:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(text))
            return result.scalar() if result.returns_rows else None

    def set_archive_command(self, command: str) -> None:
        self.sql(f"ALTER SYSTEM SET archive_command = '{command.replace(chr(39), chr(39) * 2)}'")
        self.sql("SELECT pg_reload_conf()")

    def archived(self) -> int:
        return int(str(self.sql("SELECT archived_count FROM pg_stat_archiver")))

    def write(self, segments: int) -> int:
        """Write about ``segments`` segments of WAL; return the number of segments finished."""
        start = int(str(self.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")))
        while int(str(self.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))) - start < (
            segments * SEGMENT
        ):
            self.sql(
                "INSERT INTO load SELECT g, md5(g::text) || md5((g * 7)::text) || "
                "repeat(md5(random()::text), 4) FROM generate_series(1, 20000) AS g"
            )
        self.sql("SELECT pg_create_restore_point('bench')")
        self.sql("SELECT pg_switch_wal()")
        end = int(str(self.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")))
        return (end - 1) // SEGMENT - start // SEGMENT

    def waiting(self) -> list[Path]:
        status = self.server.data_dir / "pg_wal" / "archive_status"
        return [p for p in status.iterdir() if p.name.endswith(".ready")]

    def drain(self, expected: int, timeout: float = 1800) -> float:
        """Wait until ``expected`` more segments than now are archived; return the seconds."""
        begun = time.perf_counter()
        while time.perf_counter() - begun < timeout:
            if not self.waiting() and self.archived() >= expected:
                return time.perf_counter() - begun
            time.sleep(0.05)
        raise SystemExit(f"archiving did not finish within {timeout} s")


def watch(cluster: Cluster, done: threading.Event, lag: list[float]) -> None:
    """Keep in ``lag[0]`` the largest age seen of the oldest segment waiting to be archived."""
    while not done.is_set():
        ages = []
        for path in cluster.waiting():
            try:
                ages.append(time.time() - path.stat().st_mtime)
            except FileNotFoundError:
                continue
        lag[0] = max(lag[0], *ages, 0.0)
        time.sleep(0.1)


def methods(work: Path, s3_url: str, barman: Path | None) -> dict[str, tuple[str, list[str]]]:
    """Return, per method: its archive_command and the command of its long-lived helper."""
    user = service_user()
    plain = work / "cp-archive"
    plain.mkdir()
    if user is not None:
        hand_over([plain], user)
    found: dict[str, tuple[str, list[str]]] = {
        "cp": (f"test ! -f {plain}/%f && cp %p {plain}/%f", []),
    }
    for name, storage in (("pgwarden local", str(work / "pgw-local")), ("pgwarden s3", s3_url)):
        spool = work / f"spool-{name.split()[1]}"
        prepare_spool(spool, owner=user)
        helper = [str(PGWARDEN), "wal", "archive", "--spool", str(spool), "--storage", storage]
        found[name] = (archive_command(spool), helper)
    if barman is not None:
        bucket, endpoint = s3_url.split("?")[0], s3_url.split("endpoint_url=")[1].split("&")[0]
        # Credentials from a file the server's user reads, never on the command line.
        credentials = work / "aws-credentials"
        credentials.write_text(
            f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
        )
        if user is not None:
            hand_over([credentials], user)
        credentials.chmod(0o600)
        env = f"AWS_SHARED_CREDENTIALS_FILE={credentials} AWS_DEFAULT_REGION=us-east-1"
        command = (
            f"{env} {barman}/bin/barman-cloud-wal-archive --endpoint-url {endpoint} "
            f"{bucket.replace('/prod', '/barman')} bench %p"
        )
        found["barman-cloud"] = (command, [])
    return found


def archiving(cluster: Cluster, work: Path, args: argparse.Namespace, s3_url: str) -> None:
    print(f"\n1-2. archiving {args.segments} segments of 16 MiB, one archive_command each")
    print(f"{'method':<16} {'segments/s':>10} {'max lag s':>10} {'drain s':>8}")
    rates: dict[str, float] = {}
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    for name, (command, helper) in methods(work, s3_url, args.barman).items():
        if helper:
            helper += ["--data-dir", str(cluster.server.data_dir)]
        process = subprocess.Popen(helper, env=env) if helper else None
        try:
            # A long-lived archiver is warm, as in production: one segment through first.
            cluster.set_archive_command(command)
            cluster.drain(cluster.archived() + cluster.write(1))
            # Then a backlog it cannot push ahead of PostgreSQL (it is stopped meanwhile).
            cluster.set_archive_command("")
            if process is not None:
                process.send_signal(signal.SIGSTOP)
            made = cluster.write(args.segments)
            base = cluster.archived()
            begun = time.perf_counter()
            if process is not None:
                process.send_signal(signal.SIGCONT)
            cluster.set_archive_command(command)
            cluster.drain(base + made)
            rates[name] = made / (time.perf_counter() - begun)
            # Lag under load: write while archiving, watching the oldest waiting segment.
            lag = [0.0]
            done = threading.Event()

            watcher = threading.Thread(target=watch, args=(cluster, done, lag))
            watcher.start()
            base = cluster.archived()
            made = cluster.write(args.segments)
            drained = cluster.drain(base + made)
            done.set()
            watcher.join()
            print(f"{name:<16} {rates[name]:>10.1f} {lag[0]:>10.1f} {drained:>8.1f}")
        finally:
            if process is not None:
                process.terminate()
                process.wait()
    for name, rate in rates.items():
        if name != "cp":
            print(f"{name} / cp: {rate / rates['cp']:.2f}x")
    if "barman-cloud" in rates:
        print(f"pgwarden s3 / barman-cloud: {rates['pgwarden s3'] / rates['barman-cloud']:.1f}x")


def rto(cluster: Cluster, work: Path, args: argparse.Namespace) -> None:
    print(f"\n3. restore time of a {args.size_gb} GB database from a base backup plus WAL")
    storage = LocalStorage(work / "rto-storage")
    spool = work / "rto-spool"
    by_hand_wal = work / "rto-wal"
    by_hand_wal.mkdir()
    user = service_user()
    if user is not None:
        hand_over([by_hand_wal], user)
    prepare_spool(spool, owner=user)
    with cluster.engine.connect() as conn:
        archiving_plan(conn, spool=spool, apply=True)
    cluster.set_archive_command(f"{archive_command(spool)} && cp %p {by_hand_wal}/%f")
    stop = threading.Event()
    from pgwarden.backup.wal import run_archiver

    archiver = threading.Thread(
        target=run_archiver,
        args=(storage, spool),
        kwargs={"stop": stop, "data_dir": cluster.server.data_dir},
    )
    archiver.start()
    try:
        cluster.sql("CREATE TABLE big (id bigint, body text)")
        while int(str(cluster.sql("SELECT pg_database_size(current_database())"))) < (
            args.size_gb * 1024**3
        ):
            cluster.sql(
                "INSERT INTO big SELECT g, repeat(md5(random()::text), 8) "
                "FROM generate_series(1, 200000) AS g"
            )
        create_base_backup(cluster.server.url(), storage)
        plain = work / "rto-plain"
        basebackup = find_binary("pg_basebackup", min_major=18)
        conn_args = client_args(cluster.server.url(), application_name="bench")
        subprocess.run(
            [str(basebackup.path), "--dbname", conn_args.dbname, "-D", str(plain), "-Ft",
             "-X", "none", "-c", "fast", "--no-password"],
            env={**os.environ, **conn_args.env}, check=True,
        )  # fmt: skip
        cluster.write(16)
        cluster.drain(0)
    finally:
        stop.set()
        archiver.join()
    port = free_port()
    restored = restore_pitr(storage, work / "rto-pgwarden", RecoveryTarget(), port=port)
    ours = restored.seconds
    stop_restored(restored, remove=True)

    begun = time.perf_counter()
    target = work / "rto-by-hand"
    target.mkdir(mode=0o700)
    subprocess.run(["tar", "-xf", str(plain / "base.tar"), "-C", str(target)], check=True)
    with (target / "postgresql.auto.conf").open("a") as handle:
        handle.write(
            f"\nrestore_command = 'cp {by_hand_wal}/%f %p'\narchive_mode = 'off'\n"
            f"port = {free_port()}\nlisten_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\nlc_messages = 'C'\n"
        )
    (target / "recovery.signal").touch()
    own(target)
    log_file = work / "rto-by-hand.log"
    bin_dir = server_bin_dir(18)
    start_server(bin_dir, target, log_file)
    while "database system is ready to accept connections" not in log_file.read_text():
        time.sleep(0.1)
    by_hand = time.perf_counter() - begun
    stop_server(bin_dir, target)
    print(f"{'pgwarden restore':<24} {ours:>7.1f} s ({restored.wal_files} WAL files)")
    print(f"{'tar + cp by hand':<24} {by_hand:>7.1f} s")
    print(f"pgwarden / by hand: {ours / by_hand:.2f}x")


def wait_for_port(port: int, timeout: float = 60) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=64)
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--barman", type=Path, default=None, help="a virtualenv with barman")
    parser.add_argument("--skip-rto", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pgwarden-bench-pitr-"))
    work.chmod(0o711)
    moto_port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-p", str(moto_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.environ.update({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET})
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    cluster: Cluster | None = None
    try:
        wait_for_port(moto_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        s3_url = f"s3://{bucket}/prod?endpoint_url={endpoint}&region=us-east-1"
        open_storage(s3_url).check()
        cluster = Cluster(work)
        cluster.sql("ALTER SYSTEM SET archive_mode = on")
        cluster.sql("ALTER SYSTEM SET max_wal_size = '4GB'")
        cluster.server.stop()
        cluster.server.start()
        cluster.sql("CREATE TABLE load (id int, body text)")
        archiving(cluster, work, args, s3_url)
        if not args.skip_rto:
            rto(cluster, work, args)
    finally:
        moto.terminate()
        if cluster is not None:
            cluster.engine.dispose()
            # Immediate: an archive command may still wait for an archiver now gone.
            subprocess.run(
                [str(server_bin_dir(18) / "pg_ctl"), "stop", "-m", "immediate", "-D",
                 str(cluster.server.data_dir)],
                user=service_user(), cwd="/", capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
