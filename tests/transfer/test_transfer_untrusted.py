"""Bundles as untrusted input: whatever a bundle holds, an import ends cleanly and safely.

A bundle comes from storage that more people can write than the host importing from it.
Every run here ends in a :class:`PgwardenError` (an ``error:`` line from the CLI) or a
correct import; the target is unchanged after an error; nothing outside the bundle is
touched; and no traceback is printed. Bundles are written readable by their owner only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pgwarden.cli.main import cli
from pgwarden.errors import PgwardenError, UserError
from pgwarden.testing.servers import TestServer
from pgwarden.transfer import (
    BundleError,
    ImportReport,
    TransformSpec,
    export_bundle,
    export_personal_data,
    export_table,
    import_bundle,
    import_csv,
    read_bundle,
)
from pgwarden.transfer.copytext import parse_copy_line
from pgwarden.transfer.export.bundle_files import DataFile, data_file_name
from pgwarden.transfer.journal.runs import ensure_journal
from transfer_import_support import connection, run

SCHEMA = """
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent, note text)
"""
ROWS = """
INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'drei');
INSERT INTO child VALUES (1, 1, 'tab\there'), (2, 2, NULL), (3, 1, 'line
break'), (4, 3, 'back\\slash'), (5, 3, 'ü ✓')
"""
TABLES = ["public.parent", "public.child"]
NULL_NOTES = {"tables": {"public.child": {"note": "null"}}}


def statements(sql: str) -> list[str]:
    return [part for part in sql.split(";\n") if part.strip()]


@pytest.fixture(scope="module")
def source_url(pg_server: TestServer) -> Iterator[str]:
    name = pg_server.create_database()
    url = pg_server.url(name)
    run(url, *statements(SCHEMA), *statements(ROWS))
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def target_url(pg_server: TestServer) -> Iterator[str]:
    """An empty copy of the schema, with pgwarden's journal in place."""
    name = pg_server.create_database()
    url = pg_server.url(name)
    run(url, *statements(SCHEMA))
    with connection(url) as conn, conn.begin():
        ensure_journal(conn)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def bundles(source_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The module's one export of each format."""
    root = tmp_path_factory.mktemp("bundles")
    with connection(source_url) as conn:
        for format in ("copy", "jsonl"):
            export_bundle(conn, root / format, tables=TABLES, format=format)  # type: ignore[arg-type]
    return {format: root / format for format in ("copy", "jsonl")}


def state(url: str) -> tuple[Any, ...]:
    """Return everything an import can change: the rows, and pgwarden's journal."""
    with connection(url) as conn:
        return tuple(
            conn.execute(
                sa.text(
                    "SELECT (SELECT string_agg(p::text, '|' ORDER BY id) FROM parent p),"
                    " (SELECT string_agg(c::text, '|' ORDER BY id) FROM child c),"
                    " (SELECT count(*) FROM pgwarden.import_run),"
                    " (SELECT count(*) FROM pgwarden.import_journal)"
                )
            ).one()
        )


def source_rows(url: str) -> dict[str, set[str]]:
    with connection(url) as conn:
        return {
            table: set(conn.execute(sa.text(f"SELECT t::text FROM {table} AS t")).scalars())
            for table in ("parent", "child")
        }


def empty(url: str) -> None:
    run(
        url,
        "DELETE FROM pgwarden.import_journal",
        "DELETE FROM pgwarden.import_run",
        "TRUNCATE child, parent",
    )


def copy_of(bundle: Path, into: Path) -> Path:
    out = into / "bundle"
    shutil.copytree(bundle, out)
    return out


def manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())  # type: ignore[no-any-return]


def write_manifest(bundle: Path, document: Any) -> None:
    (bundle / "manifest.json").write_text(json.dumps(document))


def child_file(bundle: Path) -> Path:
    table = next(t for t in manifest(bundle)["tables"] if t["name"] == "child")
    return bundle / table["file"]


def rewrite(bundle: Path, name: str, data: bytes, *, rows: int | None = None) -> None:
    """Replace table ``name``'s data with ``data`` and make the manifest agree with it."""
    document = manifest(bundle)
    table = next(t for t in document["tables"] if t["name"] == name)
    (bundle / table["file"]).write_bytes(data)
    table["bytes"], table["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    if rows is not None:
        table["rows"] = rows
    write_manifest(bundle, document)


def tree(path: Path) -> dict[str, tuple[Any, ...]]:
    """Return every entry under ``path``: kind, mode, size, contents' hash, mtime."""
    found = {}
    for entry in sorted(path.rglob("*")):
        info = entry.lstat()
        digest = (
            hashlib.sha256(entry.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
        )
        found[str(entry)] = (stat.S_IFMT(info.st_mode), info.st_mode, info.st_size, digest,
                             info.st_mtime_ns)  # fmt: skip
    return found


def pgwarden_(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def assert_clean_cli(result: Result) -> None:
    """Exit 0, or an error pgwarden expected (no traceback, no last-resort report)."""
    assert "Traceback" not in result.output
    assert "This is a bug in pgwarden" not in result.output, result.output
    assert "database error:" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        assert "error:" in result.stderr or '"error"' in result.stdout, result.output


def load(url: str, bundle: Path, **options: Any) -> ImportReport:
    with connection(url) as conn:
        return import_bundle(conn, bundle, **options)


# -- the findings, one by one -------------------------------------------------------------


def test_a_deeply_nested_manifest_is_a_clean_error(
    bundles: dict[str, Path], target_url: str, tmp_path: Path
) -> None:
    bundle = copy_of(bundles["copy"], tmp_path)
    document = manifest(bundle)
    text = json.dumps(document).replace(
        '"transforms": []', '"transforms": ' + "[" * 100_000 + "]" * 100_000
    )
    (bundle / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="malformed: it is not JSON: recursion limit"):
        read_bundle(bundle)
    result = pgwarden_(target_url, "import", str(bundle), "--dry-run")
    assert result.exit_code == 2 and "error:" in result.stderr
    assert_clean_cli(result)


def first_table(**values: Any) -> Callable[[Any], None]:
    return lambda m: m["tables"][0].update(values)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (first_table(rows="5"), r"tables\.0\.rows: Input should be a valid integer"),
        (first_table(rows=True), r"tables\.0\.rows: Input should be a valid integer"),
        (first_table(rows=-1), r"tables\.0\.rows: Input should be greater than or equal to 0"),
        (first_table(name="x" * 10_000), r"tables\.0\.name: String should have at most 255"),
        (first_table(format="csv"), r"tables\.0\.format: Input should be 'copy' or 'jsonl'"),
        (first_table(sha256="0" * 63), r"tables\.0\.sha256: String should match pattern"),
        (lambda m: m["tables"][0]["columns"][0].update(nullable=1), "valid boolean"),
        (lambda m: m["tables"][0]["columns"].append(m["tables"][0]["columns"][0]), "twice"),
        (lambda m: m.update(tables={}), r"tables: Input should be a valid list"),
        (lambda m: m.update(created_at="2026-01-01T00:00:00"), "without a time zone"),
        (lambda m: m.update(extra=1), r"extra: Extra inputs are not permitted"),
        (lambda m: m.update(pgwarden_bundle=2), "version 2 is not supported"),
        (lambda m: m.update(pgwarden_bundle=True), "version True is not supported"),
        (lambda m: m.update(order=["public.parent"]), "order does not list every table"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_refused_with_where_and_why(
    bundles: dict[str, Path], tmp_path: Path, change: Callable[[Any], None], message: str
) -> None:
    bundle = copy_of(bundles["copy"], tmp_path)
    document = manifest(bundle)
    change(document)
    write_manifest(bundle, document)
    with pytest.raises(BundleError, match=message):
        read_bundle(bundle)


@pytest.mark.parametrize(
    "name",
    ["../outside/victim", "data/../../outside/victim", "/tmp/victim", "data//x.copy",
     "data/../manifest.json", "data/./x.copy", "data/.x.copy", "data/sub/x.copy", "data/"],
)  # fmt: skip
def test_a_data_file_outside_data_is_refused_before_any_file_is_opened(
    bundles: dict[str, Path], tmp_path: Path, name: str
) -> None:
    bundle = copy_of(bundles["copy"], tmp_path)
    document = manifest(bundle)
    document["tables"][0]["file"] = name
    write_manifest(bundle, document)
    with pytest.raises(BundleError, match="not a plain name in data/"):
        read_bundle(bundle)


def test_links_and_special_files_in_a_bundle_are_refused(
    bundles: dict[str, Path], target_url: str, tmp_path: Path
) -> None:
    # Each link points at a copy of what it replaces: only the link itself gives it away.
    outside = tmp_path / "outside"
    shutil.copytree(bundles["copy"], outside)
    bundle = copy_of(bundles["copy"], tmp_path)
    data = child_file(bundle)
    data.unlink()
    data.symlink_to(child_file(outside))
    with pytest.raises(BundleError, match="is a symbolic link or not a regular file"):
        read_bundle(bundle)
    data.unlink()
    os.mkfifo(data)  # a FIFO would block a plain open forever
    with pytest.raises(BundleError, match="is a symbolic link or not a regular file"):
        read_bundle(bundle)
    data.unlink()
    shutil.rmtree(bundle / "data")
    (bundle / "data").symlink_to(outside / "data")
    with pytest.raises(BundleError, match="is a symbolic link or not a regular file"):
        read_bundle(bundle)
    (bundle / "data").unlink()
    shutil.copytree(outside / "data", bundle / "data")
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(outside / "manifest.json")
    result = pgwarden_(target_url, "import", str(bundle))
    assert result.exit_code == 2 and "manifest.json is a symbolic link" in result.stderr
    # Two tables naming one file through a hard link.
    (bundle / "manifest.json").unlink()
    shutil.copy(outside / "manifest.json", bundle / "manifest.json")
    document = manifest(bundle)
    parent, child = document["tables"]
    (bundle / child["file"]).unlink()
    os.link(bundle / parent["file"], bundle / child["file"])
    child.update(bytes=parent["bytes"], sha256=parent["sha256"])
    write_manifest(bundle, document)
    with pytest.raises(BundleError, match="name one data file"):
        read_bundle(bundle)


def test_a_truncated_data_file_is_refused_before_any_row_is_read(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = copy_of(bundles["copy"], tmp_path)
    data = child_file(bundle)
    data.write_bytes(data.read_bytes()[:-3])
    with pytest.raises(BundleError, match=r"does not match the manifest \(\d+ bytes; expected"):
        read_bundle(bundle)


@pytest.mark.parametrize("transforms", [None, NULL_NOTES], ids=["plain", "transformed"])
@pytest.mark.parametrize("mode", ["insert", "upsert"])
@pytest.mark.parametrize(
    ("format", "line", "problem"),
    [
        ("jsonl", b"{bad", "is not JSON"),
        ("jsonl", b"[1, 2]", "is not a JSON object"),
        ("jsonl", b'{"id": "\xff"}', "is not UTF-8"),
        ("jsonl", b"", "is empty"),
        ("copy", b"9\t1", r"has 2 field\(s\), not 3"),
        ("copy", b"9\t1\tx\ty", r"has 4 field\(s\), not 3"),
        ("copy", b"9\t1\t\xff\xfe", "is not UTF-8"),
        ("copy", b"\xff\t1\tx", "is not UTF-8"),
    ],
)
def test_a_line_not_in_its_files_format_names_file_and_line_and_changes_nothing(
    bundles: dict[str, Path],
    target_url: str,
    tmp_path: Path,
    format: str,
    line: bytes,
    problem: str,
    mode: str,
    transforms: dict[str, Any] | None,
) -> None:
    bundle = copy_of(bundles[format], tmp_path)
    lines = child_file(bundle).read_bytes().split(b"\n")
    lines.insert(2, line)
    rewrite(bundle, "child", b"\n".join(lines), rows=len(lines) - 1)
    before = state(target_url)
    spec = TransformSpec.from_mapping(transforms) if transforms else None
    message = rf"line 3 of data/public\.child\.{format} \(public\.child\) {problem}.*; nothing"
    for dry_run in (True, False):
        with pytest.raises(BundleError, match=message):
            load(target_url, bundle, mode=mode, transforms=spec, dry_run=dry_run)
        assert state(target_url) == before


def test_a_bundle_naming_pgwardens_own_tables_is_refused(
    bundles: dict[str, Path], target_url: str, tmp_path: Path
) -> None:
    bundle = copy_of(bundles["copy"], tmp_path)
    document = manifest(bundle)
    document["tables"][0]["schema"] = "pgwarden"
    document["tables"][0]["name"] = "import_run"
    document["order"][0] = "pgwarden.import_run"
    write_manifest(bundle, document)
    before = state(target_url)
    with pytest.raises(UserError, match=r"would write pgwarden\.import_run, in pgwarden's"):
        load(target_url, bundle, mode="replace")
    result = pgwarden_(target_url, "import", str(bundle), "--mode", "replace")
    assert result.exit_code == 2 and "pgwarden's or the system's schemas" in result.stderr
    document["tables"][0]["schema"] = "pg_catalog"
    document["order"][0] = "pg_catalog.import_run"
    write_manifest(bundle, document)
    with pytest.raises(UserError, match=r"pg_catalog\.import_run"):
        load(target_url, bundle)
    csv = tmp_path / "runs.csv"
    csv.write_text("id,kind\n99,import\n")
    with pytest.raises(UserError, match=r"pgwarden\.import_run"), connection(target_url) as conn:
        import_csv(conn, "pgwarden.import_run", csv)
    assert state(target_url) == before


def test_an_allow_list_refuses_any_other_table(
    bundles: dict[str, Path], target_url: str, tmp_path: Path
) -> None:
    before = state(target_url)
    with pytest.raises(UserError, match=r"tables not allowed: public\.child; nothing"):
        load(target_url, bundles["copy"], allow_tables=["parent"])
    with pytest.raises(UserError, match="no table 'nowhere'"):
        load(target_url, bundles["copy"], allow_tables=["parent", "nowhere"])
    refused = pgwarden_(target_url, "import", str(bundles["copy"]), "--allow-table", "parent")
    assert refused.exit_code == 2 and "not allowed: public.child" in refused.stderr
    assert state(target_url) == before
    allowed = pgwarden_(target_url, "--json", "import", str(bundles["copy"]), "--dry-run",
                        "--allow-table", "public.parent", "--allow-table", "child")  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["totals"]["inserted"] == 8
    assert state(target_url) == before


def test_tables_whose_names_join_alike_get_distinct_files(tmp_path: Path) -> None:
    assert data_file_name("a.b", "c", "copy") != data_file_name("a", "b.c", "copy")
    assert data_file_name("a.b", "c", "copy") == "data/a%2Eb.c.copy"
    assert data_file_name("100%", "x", "copy") == "data/100%25.x.copy"
    for schema, name in [("a.b", "c"), ("a", "b.c")]:
        with DataFile(tmp_path, schema, name, "copy") as data:
            data.write(f"{schema} {name}\n".encode())
    assert sorted(p.read_text() for p in (tmp_path / "data").iterdir()) == ["a b.c\n", "a.b c\n"]
    # A name taken already (names differing in case on a case-folding disk) is numbered.
    with DataFile(tmp_path, "a.b", "c", "copy") as again:
        again.write(b"\n")
    assert again.file == "data/a%2Eb.c~2.copy"
    # Names too long for a file system are shortened, distinct still.
    long = [data_file_name("ü" * 63, "ä" * 63 + tail, "jsonl") for tail in ("x", "y")]
    assert long[0] != long[1] and all(len(name.split("/")[1]) <= 255 for name in long)


def test_a_bundle_written_with_the_old_file_names_still_imports(
    source_url: str, target_url: str, tmp_path: Path
) -> None:
    run(source_url, 'CREATE TABLE "odd.name" (id int PRIMARY KEY)',
        'INSERT INTO "odd.name" VALUES (1), (2)')  # fmt: skip
    run(target_url, 'CREATE TABLE "odd.name" (id int PRIMARY KEY)')
    try:
        with connection(source_url) as conn:
            export_bundle(conn, tmp_path / "b", tables=['public."odd.name"'])
        bundle = tmp_path / "b"
        document = manifest(bundle)
        (table,) = document["tables"]
        assert table["file"] == "data/public.odd%2Ename.copy"
        (bundle / table["file"]).rename(bundle / "data/public.odd.name.copy")  # as written before
        table["file"] = "data/public.odd.name.copy"
        write_manifest(bundle, document)
        report = load(target_url, bundle, dry_run=True)
        assert report.ok and report.totals["inserted"] == 2
    finally:
        run(source_url, 'DROP TABLE "odd.name"')
        run(target_url, 'DROP TABLE "odd.name"')


def modes(path: Path) -> dict[str, int]:
    return {
        str(entry.relative_to(path)): stat.S_IMODE(entry.stat().st_mode)
        for entry in [path, *path.rglob("*")]
    }


def test_bundles_and_personal_data_exports_are_private(source_url: str, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with connection(source_url) as conn:
            export_bundle(conn, tmp_path / "bundle", tables=TABLES)
            export_personal_data(conn, tmp_path / "me", user_table="public.parent", user_id="1",
                                 format="jsonl")  # fmt: skip
            (tmp_path / "given").mkdir(mode=0o755)  # an empty directory given: made private
            export_bundle(conn, tmp_path / "given", tables=TABLES)
            export_table(conn, "public.child", tmp_path / "child.csv")
    finally:
        os.umask(old)
    for name in ("bundle", "me", "given"):
        found = modes(tmp_path / name)
        assert found == {
            ".": 0o700,
            "data": 0o700,
            "manifest.json": 0o600,
            **{str(Path(t.file)): 0o600 for t in read_bundle(tmp_path / name).tables},
        }
    assert stat.S_IMODE((tmp_path / "child.csv").stat().st_mode) == 0o600


# -- mutated bundles -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
BAD_NAMES = ["../outside/manifest.json", "data/../../outside/data/x", "data//public.child.copy",
             "data/../manifest.json", "data/.hidden", "", "data/", "data/sub/x.copy",
             "data/public.parent.copy", "/"]  # fmt: skip
BAD_BYTES = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\t", b"\n", b"\\", b"{", b"\\x"]


def pick_path(document: Any, data: st.DataObject) -> list[Any]:
    """Return the path of a random node of ``document`` (root excluded)."""
    path: list[Any] = []
    node = document
    while isinstance(node, dict | list) and node:
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
        if data.draw(st.booleans()):
            break
    return path


def set_at(document: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return document


def mutate(bundle: Path, outside: Path, data: st.DataObject) -> bool:
    """Apply one random mutation of the kinds a hostile or damaged bundle has.

    Return whether it changed the rows in a way the manifest agrees with (a bundle that
    may import, with other rows than the source's).
    """
    kind = data.draw(st.sampled_from(
        ["type", "name", "table", "deep", "link", "data-link", "manifest-link", "fifo",
         "bytes", "truncate", "fields", "manifest-bytes"]
    ))  # fmt: skip
    event(f"mutation: {kind}")
    document = manifest(bundle)
    tables = document["tables"]
    table = data.draw(st.sampled_from(tables))
    file = bundle / table["file"]
    fix = data.draw(st.booleans())  # make the manifest agree with changed data
    if kind == "type":
        write_manifest(bundle, set_at(document, pick_path(document, data), data.draw(json_values)))
    elif kind == "name":
        table["file"] = data.draw(st.sampled_from([*BAD_NAMES, str(outside / table["file"])]))
        write_manifest(bundle, document)
    elif kind == "table":  # a table the target lacks, or pgwarden's own, named to confuse
        old = f"{table['schema']}.{table['name']}"
        table["schema"], table["name"] = data.draw(st.sampled_from(
            [("public", "[/x] [bold]missing"), ("pgwarden", "import_run"), ("pg_temp", "child"),
             ("public", ":smile: \x1b[2J"), ("public", "child"), ("public", "parent")]
        ))  # fmt: skip
        document["order"] = [
            f"{table['schema']}.{table['name']}" if name == old else name
            for name in document["order"]
        ]
        write_manifest(bundle, document)
    elif kind == "deep":
        depth = data.draw(st.integers(min_value=150, max_value=20_000))
        text = json.dumps(set_at(document, pick_path(document, data), "DEEP"))
        (bundle / "manifest.json").write_text(text.replace('"DEEP"', "[" * depth + "]" * depth))
    elif kind == "link":
        file.unlink()
        file.symlink_to(outside / table["file"])
    elif kind == "data-link":
        shutil.rmtree(bundle / "data")
        (bundle / "data").symlink_to(outside / "data")
    elif kind == "manifest-link":
        (bundle / "manifest.json").unlink()
        (bundle / "manifest.json").symlink_to(outside / "manifest.json")
    elif kind == "fifo":
        file.unlink()
        os.mkfifo(file)
    elif kind in ("bytes", "truncate", "fields"):
        content = file.read_bytes()
        at = data.draw(st.integers(min_value=0, max_value=len(content)))
        if kind == "bytes":
            content = content[:at] + data.draw(st.sampled_from(BAD_BYTES)) + content[at:]
        elif kind == "truncate":
            content = content[:at]
        else:
            lines = content.split(b"\n")
            number = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[number] = data.draw(st.sampled_from(
                [lines[number] + b"\tx", lines[number].replace(b"\t", b"", 1), b"[]", b"1",
                 b'{"id": 1', b"", lines[number][: len(lines[number]) // 2]]
            ))  # fmt: skip
            content = b"\n".join(lines)
        if fix:
            rewrite(bundle, table["name"], content)
            return True
        file.write_bytes(content)
    else:
        raw = (bundle / "manifest.json").read_bytes()
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        (bundle / "manifest.json").write_bytes(raw[:at] + data.draw(st.sampled_from(BAD_BYTES)))
    return False


def check_imported(url: str, expected: dict[str, set[str]], inserted: int) -> None:
    """A real import of an unchanged bundle wrote the source's rows (as transformed)."""
    now = dict(zip(("parent", "child"), state(url)[:2], strict=True))
    written = {table: set(rows.split("|")) if rows else set() for table, rows in now.items()}
    assert written == expected
    assert sum(len(rows) for rows in written.values()) == inserted


def check_imported_as_changed(url: str, bundle: Path, transforms: bool) -> None:
    """A real import of a bundle whose rows were changed wrote the rows its files hold."""
    document = manifest(bundle)
    with connection(url) as conn:
        for table in document["tables"]:
            lines = [line for line in (bundle / table["file"]).read_bytes().split(b"\n") if line]
            if table["format"] == "copy":
                ids = {int(parse_copy_line(line)[0] or "") for line in lines}
            else:
                ids = {int(json.loads(line)["id"]) for line in lines}
            name = table["name"]
            assert set(conn.execute(sa.text(f"SELECT id FROM {name}")).scalars()) == ids
        if transforms:
            assert conn.execute(sa.text("SELECT count(note) FROM child")).scalar() == 0


def import_with_cli(
    url: str, bundle: Path, mode: str, dry_run: bool, transforms: bool
) -> int | None:
    """Import through the CLI; return the rows inserted, or None after a clean error."""
    args = ["--json", "import", str(bundle), "--mode", mode]
    if dry_run:
        args.append("--dry-run")
    if transforms:
        args += ["--transforms", str(bundle.parent / "transforms.toml")]
    result = pgwarden_(url, *args)
    assert_clean_cli(result)
    return int(json.loads(result.stdout)["totals"]["inserted"]) if result.exit_code == 0 else None


def import_with_library(
    url: str, bundle: Path, mode: str, dry_run: bool, transforms: bool
) -> int | None:
    """Import through the library; return the rows inserted, or None after a PgwardenError."""
    spec = TransformSpec.from_mapping(NULL_NOTES) if transforms else None
    try:
        return load(url, bundle, mode=mode, transforms=spec, dry_run=dry_run).totals["inserted"]
    except PgwardenError as error:
        message = re.sub(r"/\S*/bundle/", "", str(error))[:60]
        event(f"refused: {type(error).__name__}: {message}")
        return None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.data(),
    format=st.sampled_from(["copy", "jsonl"]),
    transforms=st.booleans(),
    mode=st.sampled_from(["insert", "upsert", "replace"]),
    run_import=st.sampled_from([import_with_library, import_with_cli]),
    dry_run=st.booleans(),
)
def test_a_mutated_bundle_imports_correctly_or_fails_cleanly_touching_nothing(
    bundles: dict[str, Path],
    source_url: str,
    target_url: str,
    data: st.DataObject,
    format: str,
    transforms: bool,
    mode: str,
    run_import: Callable[[str, Path, str, bool, bool], int | None],
    dry_run: bool,
) -> None:
    expected = source_rows(source_url)
    if transforms:  # the note nulled
        expected["child"] = {row.rsplit(",", 1)[0] + ",)" for row in expected["child"]}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        outside = root / "outside"
        shutil.copytree(bundles[format], outside)
        bundle = copy_of(bundles[format], root)
        changed = mutate(bundle, outside, data)
        (root / "transforms.toml").write_text('[tables."public.child"]\nnote = "null"\n')
        files = tree(root)
        before = state(target_url)
        inserted = run_import(target_url, bundle, mode, dry_run, transforms)
        event("imported" if inserted is not None else "refused")
        assert tree(root) == files
        if inserted is None or dry_run:
            assert state(target_url) == before
            return
        try:
            if changed:
                check_imported_as_changed(target_url, bundle, transforms)
            else:
                check_imported(target_url, expected, inserted)
        finally:
            empty(target_url)
