"""Alembic revisions are linted one by one, offline, each finding at its op call."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import pgwarden
from pgwarden.schema.lint import LintConfig, LintTargetInvalid, at_least, lint_revisions

ROOT = Path(pgwarden.__file__).parents[2]
OWN = LintConfig(squawk=False)

REVISION_A = '''
"""Indexes for the orders page."""
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.execute("SET LOCAL lock_timeout = '2s'")
    op.create_index("ix_orders_customer", "orders", ["customer_id"])
    # pgwarden: ignore ban-drop-column -- the model stopped reading it two releases ago
    op.drop_column("orders", "legacy")
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_at", "orders", ["created_at"], postgresql_concurrently=True
        )
    op.create_index("ix_orders_ref", "orders", ["ref"], postgresql_concurrently=True)
'''
REVISION_B = '''
"""Rename, on purpose."""
# pgwarden: ignore-file renaming-column (the API reads both names since release 40)
from alembic import op

revision = "b2"
down_revision = "a1"


def upgrade():
    op.execute("SET LOCAL lock_timeout = '2s'")
    op.alter_column("orders", "note", new_column_name="remark")
    op.drop_table("orders_archive")
'''
REVISION_C = '''
"""Reads the database while upgrading."""
from alembic import op

revision = "c3"
down_revision = "b2"


def upgrade():
    raise RuntimeError("needs rows from the database")
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, body in (("a1_indexes.py", REVISION_A), ("b2_rename.py", REVISION_B),
                       ("c3_reads.py", REVISION_C)):  # fmt: skip
        (versions / name).write_text(textwrap.dedent(body))
    return tmp_path / "migrations"


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_each_finding_names_the_revision_file_and_the_op_call(project: Path) -> None:
    findings = lint_revisions(project, config=OWN)
    a1 = project / "versions" / "a1_indexes.py"
    placed = {(f.rule, Path(f.file or "").name, f.line, f.revision) for f in findings}
    assert placed == {
        ("require-concurrent-index-creation", "a1_indexes.py",
         line_of(a1, '"ix_orders_customer"'), "a1"),
        ("ban-concurrent-index-creation-in-transaction", "a1_indexes.py",
         line_of(a1, '"ix_orders_ref"'), "a1"),
        ("ban-drop-table", "b2_rename.py",
         line_of(project / "versions" / "b2_rename.py", "drop_table"), "b2"),
        # the rename holds ACCESS EXCLUSIVE on orders when the drop takes orders_archive
        ("several-access-exclusive-locks", "b2_rename.py",
         line_of(project / "versions" / "b2_rename.py", "drop_table"), "b2"),
        ("render-failed", "c3_reads.py", 1, "c3"),
    }  # fmt: skip
    failed = next(f for f in findings if f.rule == "render-failed")
    assert "needs rows from the database" in failed.message and "not checked" in failed.message


def test_a_revision_statement_is_the_sql_alembic_renders(project: Path) -> None:
    (finding,) = [f for f in lint_revisions(project, config=OWN, revisions=["a1"])
                  if f.rule == "require-concurrent-index-creation"]  # fmt: skip
    assert finding.statement == "CREATE INDEX ix_orders_customer ON orders (customer_id)"


def test_learnhub_migrations_pass_lint() -> None:
    findings = lint_revisions(ROOT / "examples" / "learnhub" / "alembic.ini")
    assert {f.revision for f in findings} <= {"0001", "0002"}
    failing = [
        f"{f.where} {f.rule}: {f.message}" for f in findings if at_least(f.severity, "medium")
    ]
    assert failing == []
    assert not [f for f in findings if f.rule == "render-failed"]


def test_unknown_targets_are_refused(project: Path, tmp_path: Path) -> None:
    with pytest.raises(LintTargetInvalid, match="no revision zz"):
        lint_revisions(project, revisions=["zz"], config=OWN)
    with pytest.raises(LintTargetInvalid, match=r"neither an alembic\.ini"):
        lint_revisions(tmp_path / "nowhere", config=OWN)
    (tmp_path / "broken.ini").write_text("[alembic]\nscript_location = missing\n")
    with pytest.raises(LintTargetInvalid):
        lint_revisions(tmp_path / "broken.ini", config=OWN)


def test_assume_in_transaction_leaves_a_revision_its_own_transaction(project: Path) -> None:
    config = LintConfig(assume_in_transaction=True)
    rules = {f.rule for f in lint_revisions(project, config=config, revisions=["a1"])}
    assert "transaction-nesting" not in rules
    assert "ban-concurrent-index-creation-in-transaction" in rules


def test_sql_that_does_not_parse_is_placed_at_its_op_call(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "d4_typo.py").write_text(
        'from alembic import op\n\nrevision = "d4"\ndown_revision = None\n\n\n'
        "def upgrade():\n"
        "    op.execute(\"SET LOCAL lock_timeout = '1s'\")\n"
        '    op.execute("ALTER TABLE orders ADD COLUMN")\n'
    )
    (finding,) = [f for f in lint_revisions(tmp_path, config=OWN) if f.rule == "syntax-error"]
    assert (Path(finding.file or "").name, finding.line) == ("d4_typo.py", 9)
