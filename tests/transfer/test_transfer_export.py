"""Bundles from learnhub: chosen rows with their closure, anonymized, load into an empty copy.

The proof of a bundle is loading it: each file goes into an empty learnhub database
(migrated, no rows) with plain ``COPY FROM`` in the manifest's order, foreign keys
enforced, and nothing fails.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine

from pgwarden.db.binaries import find_binary
from pgwarden.db.engines import create_engine
from pgwarden.errors import PgwardenError, UserError
from pgwarden.transfer import (
    BundleError,
    ExportResult,
    TransferProgress,
    TransformSpec,
    compile_transforms,
    export_bundle,
    export_personal_data,
    import_bundle,
    read_bundle,
)
from pgwarden.transfer.anonymize._rewrite import rewritten
from pgwarden.transfer.anonymize._workers import WorkerPool
from pgwarden.transfer.bundle import BundleColumn, TableSchema
from pgwarden.transfer.copytext import format_copy_row, parse_copy_line
from pgwarden.transfer.export._copyout import CopyOut, stream_rows
from pgwarden.urls import libpq_url
from transfer_export_support import forked_children, load_with_copy

SALT = b"test-salt-not-a-secret"

ANONYMIZE = {
    "tables": {
        "public.users": {
            "email": "fake_email",
            "display_name": "fake_name",
            "password_hash": {"kind": "constant", "value": "!"},
        },
        "public.profiles": {"bio": "fake_text", "phone": "null", "avatar_url": "null"},
        "public.user_sessions": {"ip_address": "null", "user_agent": "null"},
    }
}


@pytest.fixture
def seeded(seeded_url: str) -> Iterator[Engine]:
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def empty(learnhub_url: str) -> Iterator[Engine]:
    engine = create_engine(learnhub_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def export(engine: Engine, out: Path, **options: object) -> ExportResult:
    with engine.connect() as conn:
        return export_bundle(conn, out, **options)  # type: ignore[arg-type]


def values(conn: Connection, query: str, **params: object) -> list[str]:
    return [str(v) for v in conn.execute(sa.text(query), params).scalars()]


def window(engine: Engine) -> tuple[str, str]:
    """Return a date range holding about a third of the users."""
    with engine.connect() as conn:
        low, high = conn.execute(
            sa.text(
                "SELECT percentile_disc(0.3) WITHIN GROUP (ORDER BY created_at)::text,"
                " percentile_disc(0.6) WITHIN GROUP (ORDER BY created_at)::text FROM users"
            )
        ).one()
    return low, high


def test_users_in_a_range_with_content_and_comments_anonymized_load_into_an_empty_database(
    seeded: Engine, empty: Engine, tmp_path: Path
) -> None:
    since, until = window(seeded)
    spec = TransformSpec.from_mapping(ANONYMIZE, salt=SALT)
    events: list[TransferProgress] = []
    result = export(
        seeded, tmp_path / "out",
        tables=["public.users"], date_column="created_at", since=since, until=until,
        children=2, transforms=spec, on_progress=events.append,
    )  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)
    names = set(bundle.order)
    assert {"public.users", "public.content", "public.comments", "public.organizations"} <= names

    with seeded.connect() as conn:
        chosen = values(
            conn,
            "SELECT id FROM users WHERE created_at >= :s AND created_at < :u",
            s=since,
            u=until,
        )
        # every user in the bundle: chosen ones, and the parents closure brought in
        originals = values(conn, "SELECT email FROM users") + values(
            conn, "SELECT display_name FROM users"
        )
        authored = values(conn, "SELECT count(*) FROM content WHERE author_id = ANY(:ids)",
                          ids=[int(i) for i in chosen])  # fmt: skip
    report = {t.name: t for t in result.tables}
    assert report["public.users"].direct == len(chosen)
    assert report["public.users"].added > 0  # commenters on the chosen users' content
    assert report["public.content"].rows >= int(authored[0]) > 0

    # no original e-mail or name anywhere in the bundle
    data = b"".join((tmp_path / "out" / t.file).read_bytes() for t in bundle.tables)
    leaked = [value for value in originals if value.encode() in data]
    assert leaked == []

    # counts in the manifest are the files' lines
    for table in bundle.tables:
        assert table.rows == (tmp_path / "out" / table.file).read_bytes().count(b"\n")

    # the manifest records what was done, never the salt
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert SALT.decode() not in manifest
    kinds = {(n["table"], n["column"], n["kind"]) for n in json.loads(manifest)["transforms"]}
    assert ("public.users", "email", "fake_email") in kinds

    # pgwarden import loads it into an empty learnhub, every foreign key checked
    with empty.begin() as conn:
        imported = import_bundle(conn, tmp_path / "out")
    assert imported.ok and imported.run_id is not None
    assert {t.table: t.inserted for t in imported.tables} == {
        t.qualified: t.rows for t in bundle.tables
    }
    with empty.connect() as conn:
        for table in bundle.tables:
            rows = values(conn, f"SELECT count(*) FROM {table.schema}.{table.name}")
            assert rows == [str(table.rows)]  # the manifest's counts
        emails = values(conn, "SELECT email FROM users")
        unchecked = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        assert values(conn, unchecked) == ["0"]
    assert all(email.endswith(("@example.com", "@example.net", "@example.org")) for email in emails)
    # and no original e-mail or name anywhere in the target database (import journal too)
    dumped = subprocess.run(
        [str(find_binary("pg_dump").path), "--data-only", "--dbname",
         libpq_url(empty.url.render_as_string(hide_password=False))],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert dumped.count(b"\nCOPY ") >= len(bundle.tables)
    assert [value for value in originals if value.encode() in dumped] == []

    # progress came per table, ending at each table's rows
    last = {e.table: e.rows for e in events}
    assert last == {t.qualified: t.rows for t in bundle.tables}


def test_jsonl_bundle_loads_the_same_rows(seeded: Engine, tmp_path: Path) -> None:
    result = export(
        seeded, tmp_path / "out", tables=["public.content"],
        where=["state = 'published'"], format="jsonl",
    )  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)
    table = bundle.table("public.content")
    assert table.file == "data/public.content.jsonl"
    rows = [json.loads(line) for line in (tmp_path / "out" / table.file).read_text().splitlines()]
    with seeded.connect() as conn:
        published = values(conn, "SELECT count(*) FROM content WHERE state = 'published'")
    assert len(rows) == int(published[0]) == table.rows
    assert {row["state"] for row in rows} == {"published"}
    assert isinstance(rows[0]["id"], int) and isinstance(json.loads(rows[0]["extra"]), dict)
    assert "search_vector" not in rows[0]  # generated: the target computes it
    assert result.rows == sum(t.rows for t in bundle.tables)


def test_personal_data_of_one_user_follows_everything_pointing_at_them(
    seeded: Engine, tmp_path: Path
) -> None:
    with seeded.connect() as conn:
        user = conn.execute(
            sa.text("SELECT author_id FROM content GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()
        sessions = values(conn, "SELECT id FROM user_sessions WHERE user_id = :u", u=user)
        authored = values(conn, "SELECT id FROM content WHERE author_id = :u", u=user)
        comments = values(
            conn,
            "SELECT id FROM comments WHERE author_id = :u"
            " OR content_id IN (SELECT id FROM content WHERE author_id = :u)",
            u=user,
        )
    with seeded.connect() as conn:
        result = export_personal_data(
            conn, tmp_path / "me", user_table="public.users", user_id=str(user), format="jsonl"
        )
    bundle = read_bundle(tmp_path / "me", verify=True)

    def ids(name: str, column: str = "id") -> set[str]:
        lines = (tmp_path / "me" / bundle.table(name).file).read_text().splitlines()
        return {str(json.loads(line)[column]) for line in lines}

    report = {t.name: t for t in result.tables}
    assert report["public.users"].direct == 1
    assert ids("public.user_sessions") == set(sessions)  # only the user's own sessions
    assert ids("public.content") >= set(authored)  # and content they commented on or rated
    assert ids("public.comments") >= set(comments)  # theirs, and comments on their content
    assert "public.page_views" not in report  # no foreign key leads there


def test_a_bad_filter_fails_before_anything_is_written(seeded: Engine, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unexpected character ';' at position 10"):
        export(seeded, tmp_path / "out", tables=["public.users"], where=["email = x; --"])
    with pytest.raises(UserError, match="does not fit column 'created_at'"):
        export(seeded, tmp_path / "out", tables=["public.users"], where=["created_at > 'soon'"])
    with pytest.raises(UserError, match="no table"):
        export(seeded, tmp_path / "out", tables=["public.nope"])
    assert not (tmp_path / "out").exists()


# -- the bundle format: odd names, COPY text, tampering --------------------------------

ODD = r"""
CREATE SCHEMA "Sales & Co";
CREATE TABLE "Sales & Co"."Order ""Lines""/ü" (
    id int PRIMARY KEY, note text, data jsonb, amount numeric(12,4), at timestamptz,
    tags text[], raw bytea);
INSERT INTO "Sales & Co"."Order ""Lines""/ü" VALUES
    (1, E'tab\there\nnewline \\ backslash', '{"k": "v\n", "n": 1.50}', 12345678.1234,
     '2026-01-02 03:04:05.123456+02', '{a,"b c"}', '\x00ff'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, '', '[]', -0.0001, 'infinity', '{}', '');
"""


def test_odd_names_get_safe_files_and_every_value_comes_back(
    pg_engine: Engine, tmp_path: Path
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(ODD))
    name = '"Sales & Co"."Order ""Lines""/ü"'
    with pg_engine.connect() as conn:
        rows_before = conn.execute(
            sa.text('SELECT t::text FROM "Sales & Co"."Order ""Lines""/ü" AS t ORDER BY id')
        ).all()
        conn.rollback()
        export_bundle(conn, tmp_path / "copy", tables=[name])
        export_bundle(conn, tmp_path / "json", tables=[name], format="jsonl")
    bundle = read_bundle(tmp_path / "copy", verify=True)
    (table,) = bundle.tables
    assert table.file == "data/Sales%20%26%20Co.Order%20%22Lines%22%2F%C3%BC.copy"
    assert (tmp_path / "copy" / table.file).is_file()
    with pg_engine.begin() as conn:
        conn.execute(sa.text('TRUNCATE "Sales & Co"."Order ""Lines""/ü"'))
    load_with_copy(pg_engine, bundle)
    with pg_engine.connect() as conn:
        rows_after = conn.execute(
            sa.text('SELECT t::text FROM "Sales & Co"."Order ""Lines""/ü" AS t ORDER BY id')
        ).all()
    assert rows_after == rows_before
    lines = (tmp_path / "json" / read_bundle(tmp_path / "json").tables[0].file).read_text()
    first = json.loads(lines.splitlines()[0], parse_float=Decimal)
    assert first["note"] == "tab\there\nnewline \\ backslash"
    assert json.loads(first["data"], parse_float=Decimal) == {"k": "v\n", "n": Decimal("1.50")}
    assert first["amount"] == Decimal("12345678.1234")
    assert first["at"] == "2026-01-02 01:04:05.123456+00"  # as PostgreSQL prints it, in UTC
    assert first["tags"] == '{a,"b c"}' and first["raw"] == "\\x00ff"


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.none()
        | st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
        ),
        min_size=1,
        max_size=5,
    )
)
def test_copy_text_round_trips_any_values(values: list[str | None]) -> None:  # fmt: skip
    assert parse_copy_line(format_copy_row(values)) == values


def test_a_tampered_or_renamed_file_is_refused(seeded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(seeded, out, tables=["public.tags"])
    bundle = read_bundle(out, verify=True)
    path = out / bundle.tables[0].file
    path.write_bytes(path.read_bytes().replace(b"\t", b"\t!", 1))
    with pytest.raises(BundleError, match="does not match the manifest"):
        read_bundle(out, verify=True)
    with pytest.raises(BundleError, match="does not match"):
        list(read_bundle(out).iter_data(bundle.tables[0]))  # checked as it streams
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tables"][0]["file"] = "../../etc/passwd"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"names the file '\.\./\.\./etc/passwd'"):
        read_bundle(out)
    manifest["pgwarden_bundle"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 2"):
        read_bundle(out)
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        read_bundle(tmp_path)
    with pytest.raises(UserError, match="not an empty directory"):
        export(seeded, out, tables=["public.tags"])


# -- streaming: chunks of lines rewritten at once, in worker processes, errors mid-COPY ----

WIDE = TableSchema(
    "public", "wide",
    tuple(BundleColumn(f"c{i}", "bigint" if i == 0 else "text", i != 0) for i in range(5)),
    ("c0",), (),
)  # fmt: skip


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk


def copy_lines(count: int) -> bytes:
    tricky = ["plain", "tab\there", "back\\slash", "new\nline", None, "", "Zoë"]
    return b"".join(
        format_copy_row([str(n - count // 2)] + [tricky[(n * k) % 7] for k in range(1, 5)])
        for n in range(count)
    )


@pytest.mark.parametrize(
    "rules",
    [
        {"c2": "fake_name"},  # inner columns only: lines are not split apart
        {"c0": "hash", "c4": "fake_email"},  # first and last columns
        {"c1": "mask", "c3": "null", "c4": "upper"},
    ],
)
def test_chunks_are_rewritten_as_row_by_row_would(rules: dict[str, object]) -> None:
    transform = compile_transforms(
        TransformSpec.from_mapping({"tables": {"public.wide": rules}}, salt=SALT), WIDE
    )
    data = copy_lines(3000)
    expected = b"".join(format_copy_row(transform.apply(parse_copy_line(line)))
                        for line in data.splitlines())  # fmt: skip
    for size in (1, 7, 4096, len(data)):  # chunks that cut lines anywhere
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        sink = Collect()
        rows = stream_rows(chunks, sink, fmt="copy", columns=WIDE.column_names,
                           transform=transform, workers=0)  # fmt: skip
        assert rows == 3000 and bytes(sink.data) == expected
    # in forked worker processes, in order, whatever the chunk sizes
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    sink = Collect()
    rows = rewritten(chunks, sink, transform.copy_fields, report=None, workers=2,
                      parallel_after=0)  # fmt: skip
    assert rows == 3000 and bytes(sink.data) == expected


def test_an_error_in_a_worker_is_raised_whole_and_stops_the_workers() -> None:
    data = copy_lines(3000)
    main = os.getpid()

    def fussy(fields: list[bytes]) -> list[bytes]:
        if b"-1200" in fields and os.getpid() != main:
            raise UserError("no -1200 here", hint="leave it out")
        return fields

    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    with pytest.raises(UserError, match="no -1200 here") as raised:
        rewritten(chunks, Collect(), [(0, fussy)], report=None, workers=2, parallel_after=0)
    assert raised.value.hint == "leave it out"
    assert not forked_children()


def test_a_worker_that_dies_is_a_clear_error_not_a_hang() -> None:
    data = copy_lines(3000)
    main = os.getpid()

    def doomed(fields: list[bytes]) -> list[bytes]:
        if b"-1200" in fields and os.getpid() != main:
            os.kill(os.getpid(), signal.SIGKILL)
        return fields

    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    with pytest.raises(PgwardenError, match=r"a transform worker \(process \d+\) stopped"):
        rewritten(chunks, Collect(), [(0, doomed)], report=None, workers=2, parallel_after=0)
    assert not forked_children()


def test_the_workers_start_inside_a_daemonic_process_too() -> None:
    # as in a Celery prefork worker, where multiprocessing's pools refuse to start
    data = b"".join(b"line %d\n" % i for i in range(400_000))  # tasks of 1 MiB: several
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def job() -> None:
        pool = WorkerPool.start(lambda task: (task.upper(), os.getpid()), 2)
        assert pool is not None
        try:
            chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
            done = [result for chunk in chunks for result in pool.submit(chunk)]
            results.put([*done, *pool.finish()])
        finally:
            pool.close()

    daemon = context.Process(target=job, daemon=True)
    daemon.start()
    done = results.get(timeout=60)
    daemon.join(timeout=60)
    assert daemon.exitcode == 0
    assert b"".join(out for out, _ in done) == data.upper()  # in order
    assert len(done) > 2 and len({pid for _, pid in done} - {daemon.pid}) == 2  # both worked


def test_a_line_without_its_newline_still_counts() -> None:
    transform = compile_transforms(
        TransformSpec.from_mapping({"tables": {"public.wide": {"c1": "upper"}}}), WIDE
    )
    sink = Collect()
    rows = stream_rows([b"1\ta\tb\tc\td\n2\te\tf\tg\th"], sink, fmt="copy",
                       columns=WIDE.column_names, transform=transform)  # fmt: skip
    assert rows == 2 and bytes(sink.data) == b"1\tA\tb\tc\td\n2\tE\tf\tg\th\n"


def test_copy_out_counts_rows_and_raises_the_servers_error(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        with conn.begin():
            copy = CopyOut(
                conn,
                "COPY (SELECT g, repeat('x', g % 50) FROM generate_series(1, 50000) g) TO STDOUT",
                chunk_size=4096,
            )
            data = b"".join(copy)
        assert copy.rows == 50000 == data.count(b"\n")
        failing = CopyOut(conn, "COPY (SELECT 1 / (40000 - g) FROM generate_series(1, 50000) g)"
                                " TO STDOUT")  # fmt: skip
        with pytest.raises(psycopg.errors.DivisionByZero), conn.begin():
            b"".join(failing)
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1  # still usable


def test_a_failing_transform_cancels_the_copy_and_leaves_no_bundle(
    seeded: Engine, tmp_path: Path
) -> None:
    seen: list[object] = []

    def fussy(value: str | None) -> str | None:
        seen.append(value)
        if len(seen) == 50:  # mid-COPY
            raise ValueError("no sevens")
        return value

    spec = TransformSpec.from_mapping({"tables": {"public.users": {"display_name": fussy}}})
    with seeded.connect() as conn:
        with pytest.raises(ValueError, match="no sevens"):
            export_bundle(conn, tmp_path / "out", tables=["public.users"], transforms=spec)
        assert conn.execute(sa.text("SELECT count(*) > 0 FROM users")).scalar_one()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("width", [1, 2])
def test_narrow_tables_are_rewritten_too(width: int) -> None:
    schema = TableSchema(
        "public", "narrow",
        tuple(BundleColumn(f"c{i}", "text", True) for i in range(width)), (), (),
    )  # fmt: skip
    rules = {f"c{i}": "upper" for i in range(width)}
    transform = compile_transforms(
        TransformSpec.from_mapping({"tables": {"public.narrow": rules}}), schema
    )
    data = b"".join(
        format_copy_row([f"v{n}\t", None][:width] if n % 3 else [None] * width) for n in range(500)
    )
    expected = b"".join(format_copy_row(transform.apply(parse_copy_line(line)))
                        for line in data.splitlines())  # fmt: skip
    sink = Collect()
    chunks = [data[i : i + 64] for i in range(0, len(data), 64)]
    assert stream_rows(chunks, sink, fmt="copy", columns=schema.column_names,
                       transform=transform) == 500  # fmt: skip
    assert bytes(sink.data) == expected


def test_renames_alone_copy_the_lines_as_they_are() -> None:
    rules = {"c1": {"kind": "rename", "to": "first"}}
    transform = compile_transforms(
        TransformSpec.from_mapping({"tables": {"public.wide": rules}}), WIDE
    )
    assert not transform.identity and not transform.copy_fields
    data = copy_lines(100)
    sink = Collect()
    assert stream_rows([data], sink, fmt="copy", columns=WIDE.column_names,
                       transform=transform) == 100  # fmt: skip
    assert bytes(sink.data) == data
