"""pgwarden finds at least everything squawk finds, on the same unsafe migrations.

squawk runs here as a user would run it (its own binary, its JSON reporter, on the
files); pgwarden lints the same files. Every violation squawk reports is among
pgwarden's findings at the same file and line; and for the rules pgwarden checks itself,
its own checks alone (squawk left out) flag the same statement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgwarden.errors import NotEnabled
from pgwarden.schema.lint import RULES, LintConfig, lint_files, lint_sql, squawk_binary

UNSAFE = {
    "0001_indexes.sql": (
        "CREATE INDEX ix_orders_customer ON orders (customer_id);\n"
        "DROP INDEX ix_old;\n"
        "REINDEX INDEX ix_orders_customer;\n"
    ),
    "0002_constraints.sql": (
        "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total > 0);\n"
        "ALTER TABLE orders ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) "
        "REFERENCES customers (id);\n"
        "ALTER TABLE orders ADD CONSTRAINT uq_ref UNIQUE (ref);\n"
        "ALTER TABLE orders ADD PRIMARY KEY (id);\n"
    ),
    "0003_columns.sql": (
        "ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n"
        "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
        "ALTER TABLE orders ADD COLUMN region text NOT NULL;\n"
        "ALTER TABLE orders ALTER COLUMN total TYPE numeric(20, 4);\n"
        "ALTER TABLE orders ADD COLUMN seq bigserial;\n"
    ),
    "0004_breaking.sql": (
        "ALTER TABLE orders RENAME COLUMN note TO remark;\n"
        "ALTER TABLE customers RENAME TO clients;\n"
        "ALTER TABLE orders DROP COLUMN legacy;\n"
        "DROP TABLE audit_old;\n"
    ),
    "0005_transactions.sql": (
        "ALTER TABLE sales DETACH PARTITION sales_2020;\n"
        "BEGIN;\n"
        "CREATE INDEX CONCURRENTLY ix_orders_at ON orders (created_at);\n"
        "COMMIT;\n"
    ),
    "0006_two_tables.sql": (
        "BEGIN;\n"
        "SET LOCAL lock_timeout = '2s';\n"
        "ALTER TABLE orders ADD COLUMN archived boolean;\n"
        "ALTER TABLE customers ADD COLUMN archived boolean;\n"
        "COMMIT;\n"
        "UPDATE orders SET archived = false;\n"
    ),
    "0007 hostile ünï %s :x.sql": (
        'CREATE INDEX "ix ""é"" %s" ON "select"."Mixed ""Case"" %(x)s" (":x");\n'
        'ALTER TABLE "select"."Mixed ""Case"" %(x)s" ADD COLUMN "$1" uuid '
        "DEFAULT gen_random_uuid();\n"
        'ALTER TABLE "select"."Mixed ""Case"" %(x)s" RENAME COLUMN ":x" TO "O\'Reilly";\n'
    ),
}  # fmt: skip
# squawk rules about schema style or statement timeouts that pgwarden leaves to squawk.
_SQUAWK_ONLY = {name for name, rule in RULES.items() if not rule.own}


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    for name, sql in UNSAFE.items():
        (tmp_path / name).write_text(sql, encoding="utf-8")
    return tmp_path


def squawk_itself(folder: Path) -> set[tuple[str, int, str]]:
    """Return (file, 1-based line, rule) of every violation squawk's own CLI reports."""
    binary = squawk_binary()
    assert binary is not None, "squawk-cli is a dev dependency"
    files = sorted(str(p) for p in folder.glob("*.sql"))
    done = subprocess.run([str(binary), "--reporter", "json", *files], capture_output=True,
                          text=True, cwd=folder, check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    return {(str(folder / Path(v["file"]).name), v["line"] + 1, v["rule_name"])
            for v in json.loads(done.stdout)}  # fmt: skip


def test_pgwarden_reports_every_violation_squawk_reports(migrations: Path) -> None:
    expected = squawk_itself(migrations)
    assert len({rule for _, _, rule in expected}) >= 15  # the corpus exercises squawk broadly
    found = {
        (f.file, f.line, squawk_rule)
        for f in lint_files([migrations])
        for squawk_rule in f.squawk_rules
    }
    assert expected - found == set()


def test_pgwarden_own_rules_alone_flag_what_squawk_flags(migrations: Path) -> None:
    expected = {(file, line, rule) for file, line, rule in squawk_itself(migrations)
                if rule not in _SQUAWK_ONLY}  # fmt: skip
    own = lint_files([migrations], config=LintConfig(squawk=False))
    found = {(f.file, f.line, f.rule) for f in own if f.severity != "info"}
    # One finding per concern: squawk's constraint-missing-not-valid on a foreign key, a
    # UNIQUE or a PRIMARY KEY is pgwarden's rule for that constraint on the same line.
    same = {"adding-foreign-key-constraint", "disallowed-unique-constraint",
            "adding-serial-primary-key-field", "constraint-missing-not-valid"}  # fmt: skip
    missing = {
        (file, line, rule)
        for file, line, rule in expected - found
        if not (rule == "constraint-missing-not-valid" and {(file, line, r) for r in same} & found)
    }
    assert missing == set()


def test_pgwarden_finds_what_squawk_does_not(migrations: Path) -> None:
    squawk_rules = {rule for _, _, rule in squawk_itself(migrations)}
    own = {f.rule for f in lint_files([migrations], config=LintConfig(squawk=False))}
    assert {
        "adding-serial-or-identity",
        "several-access-exclusive-locks",
        "unbatched-backfill",
    } <= own - squawk_rules


def test_without_squawk_installed_linting_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgwarden.schema.lint import squawk

    monkeypatch.setattr(squawk, "squawk_binary", lambda: None)
    with pytest.raises(NotEnabled) as caught:
        lint_sql("CREATE INDEX ix ON t (a);")
    assert "pgwarden[lint]" in (caught.value.hint or "") and "--without-squawk" in (
        caught.value.hint or ""
    )
    # pgwarden's own rules still run when asked to go without it.
    assert lint_sql("CREATE INDEX ix ON t (a);", config=LintConfig(squawk=False))


def test_a_squawk_config_lying_around_changes_nothing(
    migrations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (migrations / ".squawk.toml").write_text('excluded_rules = ["ban-drop-column"]\n')
    monkeypatch.chdir(migrations)
    assert any("ban-drop-column" in f.squawk_rules for f in lint_files([migrations]))


def test_squawk_binary_is_the_one_installed_beside_python() -> None:
    binary = squawk_binary()
    assert binary is not None and Path(sys.executable).parent == binary.parent


def test_a_squawk_that_does_not_answer_in_json_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgwarden.schema.lint import SquawkFailed, squawk

    broken = tmp_path / "squawk"
    broken.write_text("#!/bin/sh\necho 'thread main panicked' >&2\nexit 101\n")
    broken.chmod(0o755)
    monkeypatch.setattr(squawk, "squawk_binary", lambda: broken)
    with pytest.raises(SquawkFailed, match=r"exited 101.*panicked"):
        lint_sql("SELECT 1;")


def test_revisions_without_alembic_installed_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgwarden.schema.lint import lint_revisions

    monkeypatch.setitem(sys.modules, "alembic", None)
    monkeypatch.setitem(sys.modules, "alembic.script", None)
    with pytest.raises(NotEnabled) as caught:
        lint_revisions(tmp_path)
    assert "pgwarden[lint]" in (caught.value.hint or "")
