"""Every command the README, the guides and `--help` show runs as written.

The examples are the ``$ `` lines of the fenced ``console`` blocks of README.md and
docs/*.md (a line ending in ``\\`` goes on), and the lines under ``Example:`` in the help
of every command. Each runs through click's CliRunner against scratch resources: a seeded
learnhub database (also DATABASE_URL), a storage holding a real backup (also
PGWARDEN_BACKUP_STORAGE), an exported bundle in ``out/`` and the guide's transforms file
in the working directory. ``PLACEHOLDERS`` maps what an example leaves to the reader
(``ID``, ``RUN``, a URL) to those; ``EXAMPLES`` says, for every example, what it may exit
with or why it cannot run here. An example the table does not know fails the test, and
so does one that errors, naming the file and line it comes from.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import pgwarden
from pgwarden.cli.main import cli
from pgwarden.testing.servers import TestServer, free_port

pytestmark = pytest.mark.slow

ROOT = Path(pgwarden.__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Run:
    """An example that runs here: the exit codes it may end with, directories it writes."""

    codes: frozenset[int] = frozenset({0})
    fresh: tuple[str, ...] = ()  # emptied first: an export refuses a non-empty directory
    target: bool = False  # run on an empty learnhub database, as an import would be
    before: Callable[[Scratch], object] | None = None
    # What the server must offer, or the example is left out on it (named in SERVER_NEEDS).
    needs: str | None = None


@dataclass(frozen=True)
class Skip:
    """An example that cannot run here, and why."""

    reason: str


OK = Run()
FINDINGS = Run(codes=frozenset({0, 1}))  # exit 1 on findings at --fail-on is the point
# The advisor reads pg_stat_statements, which only a server that preloads it fills (the
# embedded one does; a server given by PGWARDEN_TEST_DSN may not).
STATEMENTS = Run(needs="preloaded pg_stat_statements")
# A scratch restore into the embedded server: a server whose columns carry options no
# stock server knows (pg_attver) cannot be restored into one.
STOCK_COLUMNS = Run(needs="stock column options")
SERVER_NEEDS: dict[str, str] = {
    "preloaded pg_stat_statements": (
        "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"
    ),
    "stock column options": (
        "SELECT NOT EXISTS (SELECT FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver%')"
    ),
}

_PITR = Skip(
    "needs a cluster that archives WAL (a restart with archive_mode on); "
    "tests/backup/test_pitr_*.py run these on scratch clusters"
)
_NO_S3 = Skip("needs an S3 bucket and its credentials; tests/backup covers S3 on loopback")
_LEARNHUB_ALEMBIC = Run(before=lambda s: s.learnhub_alembic())

# Every example, as written (prompt, `.venv/bin/` and trailing comment removed).
EXAMPLES: dict[str, Run | Skip] = {
    # README.md
    "make demo": Skip("not a pgwarden command: builds the demo from scratch (minutes)"),
    "make test": Skip("not a pgwarden command: runs this suite"),
    "make test PGWARDEN_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres": Skip(
        "not a pgwarden command: runs this suite against another server"
    ),
    "pgwarden server start": OK,
    "pgwarden ping": OK,
    "pgwarden --database-url postgresql://app:...@db:5432/app ping --json": OK,
    "pgwarden doctor --fail-on warning": FINDINGS,
    "pgwarden advise indexes": STATEMENTS,
    "pgwarden vacuum --auto --dry-run": OK,
    "pgwarden queries --running": OK,
    "pgwarden backup create --storage /backups": OK,
    "pgwarden backup list --storage /backups": OK,
    "pgwarden restore ID --storage /backups --target-url postgresql://.../restored": OK,
    "pgwarden export out/ --table public.users --date-column created_at"
    " --since 2026-01-01 --transforms anonymize.toml": Run(fresh=("out",)),
    "pgwarden import out/ --dry-run": Run(target=True),
    # docs/backup.md, docs/cli.md
    "pgwarden backup create --storage /var/backups/pg": OK,
    "pgwarden backup list": OK,
    "pgwarden backup verify 20261123T101500Z-3f9a --scratch embedded": STOCK_COLUMNS,
    "pgwarden restore 20261123T101500Z-3f9a --target-url postgresql://localhost/restored": OK,
    "pgwarden backup expire --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run": OK,
    "pgwarden --json doctor --fail-on warning --set unused_indexes.min_size_bytes=0": FINDINGS,
    "pgwarden queries --running --min-duration 30": OK,
    "pgwarden cancel 4321 --dry-run": OK,
    "pgwarden cancel 4321 --terminate": OK,
    "pgwarden replicas --replica-url postgresql://app:...@db:5432/app --max-lag 5s": OK,
    "pgwarden advise indexes --alembic": STATEMENTS,
    "pgwarden --json advise indexes --queries slow.sql --method scratch": OK,
    "pgwarden vacuum --auto --analyze --dry-run": OK,
    "pgwarden vacuum --full --table orders --max-full-size 10GB": OK,
    "pgwarden --json reindex --invalid --concurrently": OK,
    "pgwarden backup create --storage s3://acme-backups/pg --exclude-table audit_log": _NO_S3,
    "pgwarden --json backup list": OK,
    "pgwarden backup list --json": OK,
    "pgwarden backup expire --dry-run": OK,
    # docs/orm.md
    "pgwarden replicas --max-lag 5s": Skip(
        "needs DATABASE_REPLICA_URL naming a standby; tests/orm/test_replicas.py runs "
        "it against one"
    ),
    # docs/observe.md
    "pgwarden audit-orm myapp.models --path src --fail-on high --json": FINDINGS,
    # docs/migrations-lint.md
    "pgwarden migrations lint alembic.ini --fail-on high": _LEARNHUB_ALEMBIC,
    # The file holds an unsafe index build: findings at medium, the default --fail-on.
    "pgwarden migrations lint migrations/0007_orders.sql --show info": Run(
        codes=frozenset({1}), before=lambda s: s.sql_migration()
    ),
    "pgwarden --json migrations lint alembic.ini --database-url postgresql://app@db.internal/app": (
        _LEARNHUB_ALEMBIC
    ),
    # docs/transfer.md
    "pgwarden export out/ --table public.users --date-column created_at"
    " --since 2026-01-01 --until 2026-02-01 --children 2 --transforms anonymize.toml": Run(
        fresh=("out",)
    ),
    "pgwarden export-csv public.content content.csv --where \"state = 'published'\"": OK,
    "pgwarden export-csv public.users - --format jsonl --transforms anonymize.toml"
    " > users.jsonl": OK,
    # --help
    "pgwarden server start && pgwarden ping": OK,
    "pgwarden advise indexes --queries slow.sql --alembic": OK,
    "pgwarden analyze --table orders --table sales.customers": OK,
    "pgwarden audit-orm myapp.models --fail-on high": FINDINGS,
    "pgwarden backup create --storage /var/backups/pg && pgwarden backup list": OK,
    "pgwarden backup delete 20261123T101500Z-3f9a --dry-run": OK,
    "pgwarden backup expire --keep-daily 7 --keep-weekly 4 --dry-run": OK,
    "pgwarden backup info 20261123T101500Z-3f9a": OK,
    "pgwarden --json backup list --database learnhub": OK,
    "pgwarden wal list --storage /var/backups/pg": OK,
    "pgwarden --json wal list --storage /var/backups/pg": OK,
    "pgwarden pitr setup --spool /var/lib/pgwarden/spool": OK,
    "pgwarden wal push pg_wal/000000010000000000000003 --storage /var/backups/pg": _PITR,
    "pgwarden wal fetch 000000010000000000000003 /tmp/seg --storage /var/backups/pg": _PITR,
    "pgwarden wal archive --spool /var/lib/pgwarden/spool --once --storage /var/backups/pg": _PITR,
    "pgwarden pitr setup --spool /var/lib/pgwarden/spool --apply": _PITR,
    "pgwarden pitr check --storage /var/backups/pg": _PITR,
    "pgwarden wal stream --directory /var/lib/pgwarden/stream --storage /var/backups/pg": Skip(
        "runs until stopped; tests/backup/test_pitr_stream.py streams from a scratch cluster"
    ),
    "pgwarden pitr restore-point before-migration --storage /var/backups/pg": OK,
    "pgwarden pitr expire-wal --window 7d --dry-run --storage /var/backups/pg": OK,
    "pgwarden pitr status --storage /var/backups/pg": Run(codes=frozenset({1})),
    "pgwarden pitr drill --scratch /srv/scratch --port 5498 --storage /var/backups/pg": _PITR,
    "pgwarden pitr backup --storage /var/backups/pg": _PITR,
    "pgwarden pitr restore --data-dir /srv/pg2 --port 5499 --target-name before-migration": _PITR,
    "pgwarden restore --target-time 2026-12-07T10:15:00+00:00 --data-dir /srv/pg --port 5499": (
        _PITR
    ),
    'pgwarden backup pin 20261123T101500Z-3f9a --reason "before the 3.0 migration"': OK,
    "pgwarden backup unlock learnhub": OK,
    "pgwarden backup unpin 20261123T101500Z-3f9a": OK,
    "pgwarden backup-db --storage /var/backups/pg": OK,
    "pgwarden cancel 4321 --dry-run && pgwarden cancel 4321": OK,
    "pgwarden doctor": OK,
    "pgwarden doctor --check indexes --set unused_indexes.min_size_bytes=0": OK,
    "pgwarden doctor --check rls_bypassed --set rls_bypassed.role=learnhub_app": OK,
    "pgwarden --json doctor --fail-on warning": FINDINGS,
    "pgwarden erase-user --user-table public.users --user-id 42 --dry-run": OK,
    "pgwarden export me/ --user-id 42": Run(fresh=("me",)),
    "pgwarden import out/ --mode upsert --dry-run": Run(target=True),
    "pgwarden import bundle out/ --mode replace --dry-run --allow-table tags": Run(
        before=lambda s: s.export_tags()
    ),
    "pgwarden import purge 7": OK,
    "pgwarden import rollback 7 --dry-run": OK,
    "pgwarden import runs --limit 5": OK,
    "pgwarden import-csv public.tags tags.csv --mode upsert --conflict-key uq_tags_name": OK,
    "pgwarden insight snapshot && pgwarden insight growth --days 7": OK,
    "pgwarden insight growth --days 30": OK,
    "pgwarden insight regressions --days 1 --factor 2": OK,
    "pgwarden insight snapshot --keep-days 90": OK,
    "pgwarden insight snapshots --limit 10": OK,
    "pgwarden --database-url postgresql://app@db.internal/app ping": OK,
    "pgwarden reindex --invalid --concurrently": OK,
    "pgwarden restore 20261123T101500Z-3f9a --target-url postgresql://localhost/scratch": OK,
    "pgwarden restore-db 20261123T101500Z-3f9a --list": OK,
    "pgwarden server start --port 54329": OK,
    "pgwarden server start --data-dir ./.pgdata": OK,
    "pgwarden server status --json": OK,
    "pgwarden server stop": OK,
    "export DATABASE_URL=$(pgwarden server url --database learnhub)": OK,
    "pgwarden vacuum --auto --threshold 20 --analyze --dry-run": OK,
    "pgwarden version --json": OK,
    "pgwarden serve --port 8000 --root-path /pgwarden": Skip(
        "serves until stopped; tests/api/test_api_cli.py runs it over HTTP"
    ),
    "pgwarden tokens create --scope read --name grafana": OK,
    "pgwarden tokens create --scope operate --name on-call": OK,
    "pgwarden tokens list --revoked": OK,
    "pgwarden tokens revoke 12": Run(before=lambda s: s.token_ids.append(s.new_token())),
    "pgwarden tokens audit --limit 20": OK,
    # docs/tasks.md
    "pgwarden --config pgwarden.toml schedule --next 3": Run(before=lambda s: s.fleet_config()),
    "pgwarden --config pgwarden.toml fleet status --json": Run(
        codes=frozenset({0, 1}), before=lambda s: s.fleet_config()
    ),
    "pgwarden --config pgwarden.toml worker --concurrency 2": Skip(
        "runs until stopped; tests/tasks runs workers as processes"
    ),
    "pgwarden --config pgwarden.toml beat": Skip(
        "runs until stopped; tests/tasks runs beat as a process"
    ),
    # docs/migrations.md, docs/cli.md, --help: learnhub's migrations, its database at head
    "pgwarden migrations status -c alembic.ini": _LEARNHUB_ALEMBIC,
    "pgwarden migrations history -c alembic.ini": _LEARNHUB_ALEMBIC,
    "pgwarden migrations upgrade -c alembic.ini --dry-run": _LEARNHUB_ALEMBIC,
    "pgwarden migrations upgrade -c alembic.ini --lock-timeout 2 --retries 5": _LEARNHUB_ALEMBIC,
    "pgwarden migrations downgrade -1 -c alembic.ini --dry-run": _LEARNHUB_ALEMBIC,
    "pgwarden migrations check -c alembic.ini --models learnhub.models:Base": _LEARNHUB_ALEMBIC,
    "pgwarden migrations init myapp": Run(fresh=("myapp",)),
}


@dataclass
class Scratch:
    """The resources the examples run against."""

    server: TestServer
    url: str
    target_url: str
    work: Path
    storage: Path
    data_dir: Path
    port: int
    backup_id: str
    run_ids: list[str]
    session: sa.Connection
    token_ids: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)  # dropped at the end

    def pid(self) -> str:
        """Return the pid of a live idle session, opening another if one was ended."""
        try:
            pid = self.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        except sa.exc.DBAPIError:
            self.session = _engine(self.url).connect()
            pid = self.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        self.session.commit()
        return str(pid)

    def new_token(self) -> str:
        """Create an API token and return its id, for `tokens revoke`."""
        made = _pgwarden(self, "--json", "tokens", "create", "--scope", "read")
        assert made.exit_code == 0, made.output
        return str(json.loads(made.stdout)["token"]["id"])

    def export_tags(self) -> None:
        """Make ``out/`` a bundle of the tags alone."""
        shutil.rmtree(self.work / "out", ignore_errors=True)
        out = _pgwarden(self, "export", str(self.work / "out"), "--table", "public.tags")
        assert out.exit_code == 0, out.output

    def fleet_config(self) -> None:
        """Write ./pgwarden.toml naming the scratch database as the one target."""
        Path("pgwarden.toml").write_text(
            f'[targets.app]\nurl_env = "DATABASE_URL"\nstorage = "{self.storage}"\n'
        )

    def sql_migration(self) -> None:
        """Write ./migrations/0007_orders.sql, a migration with an index built unsafely."""
        (self.work / "migrations").mkdir(exist_ok=True)
        (self.work / "migrations" / "0007_orders.sql").write_text(
            "CREATE TABLE orders (id bigint PRIMARY KEY, placed_at timestamptz NOT NULL);\n"
            "CREATE INDEX orders_placed_at ON orders (placed_at);\n"
            "ALTER TABLE users ADD COLUMN nickname text;\n"
            "CREATE INDEX users_nickname ON users (nickname);\n"
        )

    def learnhub_alembic(self) -> None:
        """Write ./alembic.ini naming learnhub's migrations, for `pgwarden migrations`."""
        location = ROOT / "examples" / "learnhub" / "learnhub" / "migrations"
        (self.work / "alembic.ini").write_text(
            f"[alembic]\nscript_location = {location}\npath_separator = os\n"
        )

    def empty_database(self) -> str:
        """Return the URL of a new empty database, for a restore."""
        name = self.server.create_database()
        self.databases.append(name)
        return self.server.url(name)


# What examples leave to the reader, token by token, and what it is here.
PLACEHOLDERS: dict[str, Callable[[Scratch], str]] = {
    "postgresql://app:...@db:5432/app": lambda s: s.url,
    "postgresql://app@db.internal/app": lambda s: s.url,
    "postgresql://.../restored": Scratch.empty_database,
    "postgresql://localhost/restored": Scratch.empty_database,
    "postgresql://localhost/scratch": Scratch.empty_database,
    "/backups": lambda s: str(s.storage),
    "/var/backups/pg": lambda s: str(s.storage),
    "ID": lambda s: s.backup_id,
    "20261123T101500Z-3f9a": lambda s: s.backup_id,
    # `import rollback 7`, `import purge 7`: two runs, since a purged run cannot roll back
    "7": lambda s: s.run_ids.pop(0),
    # `tokens revoke 12`: a token made for it
    "12": lambda s: s.token_ids.pop(0),
    "4321": Scratch.pid,
    "myapp.models": lambda s: "learnhub.models",
    "src": lambda s: str(ROOT / "examples" / "learnhub"),
    "54329": lambda s: str(s.port),
    "./.pgdata": lambda s: str(s.data_dir),
}
# Where a token means a run, not a number of days: `--days 7`, `--keep-daily 7`.
_RUN_TOKENS = {"7": ("rollback", "purge"), "12": ("revoke",)}


@dataclass(frozen=True)
class Example:
    """One command line a reader is shown, and where."""

    where: str  # "README.md:40", or "pgwarden backup list --help"
    command: str


def doc_examples(path: Path) -> list[Example]:
    """Return the `$ ` lines of the console blocks of one Markdown file."""
    examples: list[Example] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence != "console":
            continue
        if pending is not None:
            pending = (pending[0], pending[1][:-1] + " " + line.strip())
        elif line.startswith("$ "):
            pending = (number, line[2:].strip())
        if pending is not None and not pending[1].endswith("\\"):
            examples.append(Example(f"{path.relative_to(ROOT)}:{pending[0]}", pending[1]))
            pending = None
    return [Example(e.where, _as_written(e.command)) for e in examples]


def _as_written(command: str) -> str:
    command = re.sub(r"\s+#\s.*$", "", command.removeprefix(".venv/bin/"))
    return " ".join(command.split())


def help_examples() -> list[Example]:
    """Return the lines under `Example:` in the help of every command."""
    examples: list[Example] = []
    for path, command in _commands(cli, ["pgwarden"]):
        text = command.help or ""
        _, found, after = text.partition("Example")
        lines = after.split(":", 1)[1].splitlines() if found else []
        joined = "\n".join(line.strip() for line in lines).replace("\\\n", " ")
        where = " ".join([*path, "--help"])
        examples += [Example(where, " ".join(line.split())) for line in joined.splitlines() if line]
    return examples


def _commands(command: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, [*path, name])


def all_examples() -> list[Example]:
    return [e for doc in DOCS for e in doc_examples(doc)] + help_examples()


def invocations(command: str) -> list[list[str]]:
    """Return the pgwarden argument lists of one example: `a && b` is two."""
    found = []
    for part in command.split("&&"):
        inner = re.fullmatch(r"\s*export \w+=\$\((.*)\)\s*", part)
        words = shlex.split(inner.group(1) if inner else part)
        if ">" in words:  # a redirection: the test keeps the output
            words = words[: words.index(">")]
        assert words[0] == "pgwarden", f"not a pgwarden command: {part!r}"
        found.append(words[1:])
    return found


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _pgwarden(scratch: Scratch, *args: str, target: bool = False) -> Result:
    env = {**scratch.env, "DATABASE_URL": scratch.target_url} if target else scratch.env
    return CliRunner().invoke(cli, list(args), env=env, prog_name="pgwarden")


@pytest.fixture(scope="module")
def scratch(
    pg_server: TestServer, seeded_template: str, migrated_template: str
) -> Iterator[Scratch]:
    """Prepare the database, storage, bundle and files the examples name."""
    name = pg_server.create_database(template=seeded_template)
    target = pg_server.create_database(template=migrated_template)
    url = pg_server.url(name)
    engine = _engine(url)
    with engine.begin() as conn:
        # Tables the maintenance examples name.
        conn.execute(sa.text("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)"))
        conn.execute(sa.text("CREATE SCHEMA sales"))
        conn.execute(sa.text("CREATE TABLE sales.customers (id bigint PRIMARY KEY, name text)"))
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    engine.dispose()
    base = Path(tempfile.mkdtemp(prefix="pgwarden-docs-"))
    os.chmod(base, 0o711)  # noqa: S103 - an embedded server run as another user enters it
    work, storage = base / "work", base / "storage"
    work.mkdir()
    guide = (ROOT / "docs" / "transfer.md").read_text()
    (work / "anonymize.toml").write_text(guide.split("```toml\n", 1)[1].split("```", 1)[0])
    (work / "slow.sql").write_text(
        "SELECT * FROM content WHERE state = 'published' ORDER BY created_at DESC LIMIT 20;\n"
    )
    scratch = Scratch(
        server=pg_server,
        url=url,
        target_url=pg_server.url(target),
        work=work,
        storage=storage,
        data_dir=base / "server",
        port=free_port(),
        backup_id="",
        run_ids=[],
        session=_engine(url).connect(),
        databases=[name, target],
    )
    scratch.env = {
        "DATABASE_URL": url,
        "PGWARDEN_BACKUP_STORAGE": str(storage),
        "PGWARDEN_DATA_DIR": str(scratch.data_dir),
        "PGWARDEN_SERVER_PORT": str(scratch.port),
        "PGWARDEN_TRANSFER_SALT": "docs-examples",
    }
    try:
        made = _pgwarden(scratch, "--json", "backup", "create")
        assert made.exit_code == 0, made.output
        scratch.backup_id = json.loads(made.stdout)["manifest"]["id"]
        scratch.export_tags()
        csv = _pgwarden(scratch, "export-csv", "public.tags", str(work / "tags.csv"))
        assert csv.exit_code == 0, csv.output
        for _ in range(2):
            run = _pgwarden(scratch, "--json", "import", str(work / "out"), "--mode", "upsert")
            assert run.exit_code == 0, run.output
            scratch.run_ids.append(str(json.loads(run.stdout)["run_id"]))
        snapshot = _pgwarden(scratch, "insight", "snapshot")
        assert snapshot.exit_code == 0, snapshot.output
        with scratch.session.begin():  # one to compare with: `insight growth --days 30`
            scratch.session.execute(
                sa.text(
                    "UPDATE pgwarden.insight_snapshot SET taken_at = now() - interval '40 days'"
                )
            )
        yield scratch
    finally:
        _pgwarden(scratch, "server", "stop")
        scratch.session.close()
        for database in scratch.databases:
            pg_server.drop_database(database)
        shutil.rmtree(base, ignore_errors=True)


def _arguments(scratch: Scratch, args: list[str]) -> list[str]:
    mapped = []
    for i, word in enumerate(args):
        if word in _RUN_TOKENS and (i == 0 or args[i - 1] not in _RUN_TOKENS[word]):
            mapped.append(word)  # a number, not a run
        elif word in PLACEHOLDERS:
            mapped.append(PLACEHOLDERS[word](scratch))
        else:
            mapped.append(word)
    return mapped


def test_every_example_is_in_the_table() -> None:
    examples = all_examples()
    unknown = [f"{e.where}: {e.command}" for e in examples if e.command not in EXAMPLES]
    assert not unknown, "examples the table in this test does not cover:\n" + "\n".join(unknown)
    stale = set(EXAMPLES) - {e.command for e in examples}
    assert not stale, f"the table lists examples no doc shows: {sorted(stale)}"


def test_command_lines_outside_console_blocks_are_synopses() -> None:
    # A command line in a plain block would escape this test: write it as `$ ` in a
    # ```console block. A synopsis (`pgwarden vacuum [--table T ...]`) stays plain.
    stray = []
    for doc in DOCS:
        fence: str | None = None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                fence = line[3:].strip() if fence is None else None
                continue
            command = line.lstrip("$ ")
            if fence in ("", "sh", "bash") and command.startswith("pgwarden ") and "[" not in line:
                stray.append(f"{doc.relative_to(ROOT)}:{number}: {line}")
    assert not stray, "command lines outside ```console blocks:\n" + "\n".join(stray)


def test_every_command_help_ends_with_an_example() -> None:
    missing = [
        " ".join(path)
        for path, command in _commands(cli, ["pgwarden"])
        if "Example" not in (command.help or "")
    ]
    assert not missing, f"commands whose --help shows no example: {missing}"


def test_the_examples_run_as_written(scratch: Scratch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch.work)  # the examples name files relative to it
    by_command: dict[str, list[str]] = {}
    for example in all_examples():
        by_command.setdefault(example.command, []).append(example.where)
    failures = []
    for command, places in by_command.items():
        expected = EXAMPLES.get(command)
        if not isinstance(expected, Run) or not _server_offers(scratch, expected.needs):
            continue
        for directory in expected.fresh:
            shutil.rmtree(scratch.work / directory, ignore_errors=True)
        if expected.before is not None:
            expected.before(scratch)
        for args in invocations(command):
            result = _pgwarden(scratch, *_arguments(scratch, args), target=expected.target)
            if result.exit_code not in expected.codes:
                failures.append(
                    f"{', '.join(places)}: `{command}` exited {result.exit_code}"
                    f" (expected {sorted(expected.codes)}):\n{result.output[-1500:]}"
                )
                break
    assert not failures, "\n\n".join(failures)


def _server_offers(scratch: Scratch, need: str | None) -> bool:
    """Return whether the test server offers what an example needs (None: nothing)."""
    if need is None:
        return True
    engine = _engine(scratch.url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(SERVER_NEEDS[need])).scalar_one())
    finally:
        engine.dispose()
