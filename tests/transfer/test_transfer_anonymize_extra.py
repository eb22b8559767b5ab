"""Without the anonymize extra (numpy, Faker), transfers work; transforms name the extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import pgwarden.transfer.anonymize as anonymize
from pgwarden.errors import NotEnabled
from pgwarden.transfer import TransformSpec, compile_transforms
from pgwarden.transfer.bundle import BundleColumn, TableSchema

USERS = TableSchema(
    "public", "users", (BundleColumn("id", "bigint", False), BundleColumn("email", "text", True)),
    ("id",), (),
)  # fmt: skip


@pytest.fixture
def without_anonymize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make numpy and Faker impossible to import, as on an install without the extra."""
    for name in list(sys.modules):
        if name.partition(".")[0] in ("numpy", "faker"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numpy", None)
    monkeypatch.setitem(sys.modules, "faker", None)
    for module in ("_fakes", "_hashes", "_prf"):
        monkeypatch.delitem(sys.modules, f"pgwarden.transfer.anonymize.{module}", raising=False)
        monkeypatch.delattr(anonymize, module, raising=False)


@pytest.mark.usefixtures("without_anonymize")
@pytest.mark.parametrize("kind", ["hash", "fake_email", "mask"])
def test_a_transform_names_the_extra_to_install(kind: str) -> None:
    spec = TransformSpec.from_mapping({"tables": {"public.users": {"email": kind}}}, salt=b"s" * 32)
    with pytest.raises(NotEnabled, match="numpy") as caught:
        compile_transforms(spec, USERS)
    assert "pip install 'pgwarden[anonymize]'" in (caught.value.hint or "")
    assert caught.value.exit_code == 2


@pytest.mark.usefixtures("without_anonymize")
def test_a_rename_needs_no_extra() -> None:
    spec = TransformSpec.from_mapping(
        {"tables": {"public.users": {"email": {"kind": "rename", "to": "mail"}}}}
    )
    transform = compile_transforms(spec, USERS)
    assert transform({"id": "1", "email": "a@b.c"}) == {"id": "1", "mail": "a@b.c"}


# Run in a fresh interpreter: the test process has loaded numpy and Faker long since.
_EXPORT = """
import json, os, sys
import pgwarden.transfer
from pgwarden.db.engines import create_engine
from pgwarden.transfer import export_bundle, read_bundle
loaded = {"import": sorted(m for m in ("numpy", "faker") if m in sys.modules)}
engine = create_engine(os.environ["PGW_URL"])
with engine.connect() as conn:
    result = export_bundle(conn, sys.argv[1])
engine.dispose()
bundle = read_bundle(sys.argv[1], verify=True)
loaded["export"] = sorted(m for m in ("numpy", "faker") if m in sys.modules)
loaded["rows"] = sum(table.rows for table in bundle.tables)
print(json.dumps(loaded))
"""


def test_importing_transfer_and_exporting_load_neither_numpy_nor_faker(
    pg_engine: Engine, pg_url: str, tmp_path: Path
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id bigint PRIMARY KEY, email text)"))
        conn.execute(sa.text("INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 5) g"))
    out = subprocess.run(
        [sys.executable, "-c", _EXPORT, str(tmp_path / "bundle")],
        capture_output=True, text=True, check=True, env={**os.environ, "PGW_URL": pg_url},
    ).stdout  # fmt: skip
    assert json.loads(out) == {"import": [], "export": [], "rows": 5}
