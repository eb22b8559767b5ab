"""Show pgwarden's scheduled jobs running, with no service but the embedded PostgreSQL.

Writes a config naming one target (``DATABASE_URL``), with the embedded server as the
broker and a clock 720 times faster than real time (an hour of schedule in 5 seconds),
starts one ``pgwarden worker`` and ``pgwarden beat``, waits until a backup, a verify,
snapshots and a doctor run are recorded, then prints ``pgwarden schedule`` and
``pgwarden fleet status`` and stops them. ``make demo`` runs it last.

    DATABASE_URL=$(pgwarden server url --database learnhub) python examples/schedule_demo.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
CONFIG = """\
[tasks]
broker = "embedded"
clock_speed = 720
retry_backoff = "1s"
deadman = "off"

[targets.learnhub]
url_env = "DATABASE_URL"
storage = "{storage}"

[targets.learnhub.schedule]
backup = "0 * * * *"
verify = "30 * * * *"
snapshot = "*/10 * * * *"
doctor = "*/15 * * * *"
expire = "45 * * * *"
"""
WANTED = {"backup", "verify", "snapshot", "doctor"}


def main() -> int:
    if not os.environ.get("DATABASE_URL"):
        print("Set DATABASE_URL to the database to schedule jobs on.", file=sys.stderr)
        return 2
    from pgwarden.tasks import catalogue

    work = Path(tempfile.mkdtemp(prefix="pgwarden-schedule-demo-"))
    config = work / "pgwarden.toml"
    config.write_text(CONFIG.format(storage=work / "backups"))
    print(f"config: {config}\n{config.read_text()}")
    subprocess.run([PGWARDEN, "--config", str(config), "schedule"], check=True)
    processes = [
        subprocess.Popen(
            [PGWARDEN, "--config", str(config), *command, "--loglevel", "WARNING"],
            start_new_session=True,
            stdout=(work / f"{command[0]}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for command in (["worker", "--concurrency", "1"], ["beat"])
    ]
    print("worker and beat started; waiting for each job to run once (up to 3 minutes)...")
    try:
        deadline = time.monotonic() + 180
        done: set[str] = set()
        while not done >= WANTED and time.monotonic() < deadline:
            time.sleep(2)
            try:
                with catalogue.catalogue(os.environ["DATABASE_URL"]) as conn:
                    done = {r.job for r in catalogue.runs(conn, limit=500) if r.status == "ok"}
            except Exception:  # noqa: S112 - the worker has not created the tables yet
                continue
            print(f"  done so far: {', '.join(sorted(done)) or 'nothing yet'}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    status = subprocess.run([PGWARDEN, "--config", str(config), "fleet", "status"], check=False)
    return 0 if done >= WANTED and status.returncode in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
