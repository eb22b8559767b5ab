"""Big tables read by a psql child in the export's snapshot: same bytes, same rows, safe.

The threshold that sends a table to psql is set to one row here, so small tables take
the psql path; "through the connection" is the same export with psql not found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.db.engines import create_engine
from pgwarden.errors import BinaryNotFound, ServerError
from pgwarden.transfer import TransferProgress, TransformSpec, export_bundle
from pgwarden.transfer.export import _psqlread, bundles
from transfer_export_support import forked_children, psql_children

PASSWORD = "pw-never-on-a-command-line"  # the embedded server trusts: any password does
ANONYMIZE = {"tables": {"public.people": {"email": "fake_email", "id": "hash"}}}
ROWS = 80_000  # past the 4 MiB after which transforms go to worker processes


@pytest.fixture
def engine(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(bundles, "_PSQL_AFTER", 1)
    url = sa.make_url(pg_url)
    if url.password is None:
        url = url.set(password=PASSWORD)
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL, note text);"
            "CREATE TABLE visits (id bigint PRIMARY KEY, person bigint REFERENCES people,"
            " at timestamptz NOT NULL);"
            "INSERT INTO people SELECT g, 'p' || g || '@corp.example',"
            " CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there, back\\\\slash'"
            " WHEN 2 THEN E'line\\nbreak Zoë' ELSE repeat('n', g % 300) END"
            f" FROM generate_series(1, {ROWS}) g;"
            "INSERT INTO visits SELECT g, 1 + g % 500, '2026-01-01'::timestamptz + g * interval"
            f" '1 minute' FROM generate_series(1, {ROWS}) g;"
            # a name psql's own syntax could trip on: quotes, :variables, ;, backslashes
            """CREATE TABLE "we:ird ""name""; \\x" ("col:umn" text, "\\N" int);"""
            """INSERT INTO "we:ird ""name""; \\x" SELECT 'v;\\g' || g, g"""
            " FROM generate_series(1, 9) g;"
            "ANALYZE;"  # the export goes by the planner's row estimates
        ))  # fmt: skip
    yield engine
    engine.dispose()


def run(
    engine: Engine,
    out: Path,
    on_progress: Callable[[TransferProgress], None] | None = None,
    **options: object,
) -> dict[str, bytes]:
    with engine.connect() as conn:
        export_bundle(conn, out, on_progress=on_progress, **options)  # type: ignore[arg-type]
    return {path.name: path.read_bytes() for path in sorted((out / "data").iterdir())}


def without_psql(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, **_: object) -> None:
        raise BinaryNotFound(f"{name} was not found.")

    monkeypatch.setattr(_psqlread, "find_binary", missing)


@pytest.mark.parametrize(
    ("transforms", "format"),
    [(None, "copy"), (ANONYMIZE, "copy"), (ANONYMIZE, "jsonl")],
    ids=["whole", "anonymized", "anonymized-jsonl"],
)
def test_psql_reads_the_rows_of_the_exports_snapshot_byte_for_byte(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transforms: dict | None,
    format: str,
) -> None:
    spec = TransformSpec.from_mapping(transforms, salt=b"s") if transforms else None
    with monkeypatch.context() as patch:
        without_psql(patch)
        expected = run(engine, tmp_path / "connection", transforms=spec, format=format)
    seen: list[list[int]] = []
    commands: list[bytes] = []

    def meddle(event: TransferProgress) -> None:
        # once, while the first big table is read: rows the snapshot must not see
        if not seen and event.table == "public.people":
            seen.append(psql_children())
            commands.extend(Path(f"/proc/{pid}/cmdline").read_bytes() for pid in seen[0])
            with engine.begin() as other:
                other.execute(sa.text(
                    "INSERT INTO people VALUES (-1, 'late@corp.example', 'late');"
                    "INSERT INTO visits VALUES (-1, -1, now()); DELETE FROM visits WHERE id = 7;"
                ))  # fmt: skip

    got = run(engine, tmp_path / "psql", on_progress=meddle, transforms=spec, format=format)
    assert seen and seen[0], "the table was not read by psql"
    assert all(PASSWORD.encode() not in command for command in commands)
    assert got == expected  # the late rows are not there, the deleted one is
    assert got[f"public.visits.{format}"].count(b"\n") == ROWS
    assert len(got) == 3


@pytest.mark.parametrize("transforms", [None, ANONYMIZE], ids=["whole", "anonymized"])
def test_a_reader_stopped_mid_table_fails_the_export_and_leaves_nothing(
    engine: Engine, tmp_path: Path, transforms: dict | None
) -> None:
    with engine.begin() as conn:  # big enough to be mid-read at the first progress report
        conn.execute(sa.text("INSERT INTO people SELECT g, repeat('x', 200), NULL"
                             " FROM generate_series(100001, 250000) g"))  # fmt: skip
    stopped: list[int] = []

    def stop(event: TransferProgress) -> None:
        if not stopped:
            with engine.begin() as other:
                stopped.extend(other.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state = 'active' AND query LIKE 'COPY%'"
                )).scalars())  # fmt: skip

    spec = TransformSpec.from_mapping(transforms, salt=b"s") if transforms else None
    said = r"through psql failed.*(terminating connection|server closed the connection)"
    with pytest.raises(ServerError, match=said):
        run(engine, tmp_path / "out", on_progress=stop, tables=["public.people"], transforms=spec)
    assert stopped == [True]
    assert not (tmp_path / "out").exists()
    assert not psql_children()
    assert not forked_children()  # the transform's workers are gone too


def test_when_psql_cannot_connect_the_export_reads_through_its_connection(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with monkeypatch.context() as patch:
        without_psql(patch)
        expected = run(engine, tmp_path / "connection")
    with engine.connect() as conn, monkeypatch.context() as patch:
        # psql would need a certificate nobody has; the export's connection is open
        patch.setenv("PGSSLMODE", "verify-full")
        patch.setenv("PGSSLROOTCERT", str(tmp_path / "no-such-root.crt"))
        with caplog.at_level(logging.INFO, logger="pgwarden.transfer"):
            export_bundle(conn, tmp_path / "fallback")
    assert "psql cannot read for the export" in caplog.text
    got = {path.name: path.read_bytes() for path in sorted((tmp_path / "fallback/data").iterdir())}
    assert got == expected
