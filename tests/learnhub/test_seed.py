from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from learnhub.__main__ import main as learnhub_cli
from learnhub.models.users import Profile
from learnhub.seed import BASE_COUNTS, plan, seed

from pgwarden.db.engines import create_engine
from pgwarden.errors import UserError


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        counts = {
            table: conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in BASE_COUNTS
        }
    engine.dispose()
    return counts


def _digest(url: str, table: str) -> str:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        digest = conn.execute(
            sa.text(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \"{table}\" AS t")
        ).scalar_one()
    engine.dispose()
    return str(digest)


def test_scale_one_is_about_fifty_thousand_rows() -> None:
    total = sum(plan(1).values())
    assert 45_000 <= total <= 60_000


def test_dry_run_writes_nothing(learnhub_url: str) -> None:
    result = CliRunner().invoke(
        learnhub_cli, ["seed", "--database-url", learnhub_url, "--scale", "0.05", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "users" in result.output and "would load" in result.output
    assert set(_counts(learnhub_url).values()) == {0}


def test_seeded_counts_match_the_plan(seeded_url: str, seed_args: dict[str, Any]) -> None:
    assert _counts(seeded_url) == plan(seed_args["scale"])


def test_same_seed_same_data(learnhub_url: str, seeded_url: str, seed_args: dict[str, Any]) -> None:
    seed(learnhub_url, **seed_args)
    for table in ("users", "content", "comments", "ratings"):
        assert _digest(learnhub_url, table) == _digest(seeded_url, table)


def test_seeding_twice_is_refused_and_reset_reseeds(
    seeded_url: str, seed_args: dict[str, Any]
) -> None:
    before = _counts(seeded_url)
    with pytest.raises(UserError, match="already holds learnhub data"):
        seed(seeded_url, **{**seed_args, "seed": 1})
    assert _counts(seeded_url) == before
    seed(seeded_url, **{**seed_args, "seed": 1}, reset=True)
    assert _counts(seeded_url) == before


def test_an_unmigrated_database_is_refused(pg_url: str) -> None:
    with pytest.raises(UserError, match="no learnhub tables"):
        seed(pg_url, scale=0.05)


@pytest.mark.parametrize("scale", [0, -1])
def test_a_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(UserError, match="scale must be above 0"):
        plan(scale)


def test_phone_numbers_are_stored_encrypted(seeded_url: str) -> None:
    engine = create_engine(seeded_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        raw = (
            conn.execute(sa.text("SELECT phone FROM profiles WHERE phone IS NOT NULL LIMIT 20"))
            .scalars()
            .all()
        )
        phones = conn.execute(sa.select(Profile.phone).where(Profile.phone.is_not(None)))
        assert all(phone.startswith("+1-") for phone in phones.scalars())
    engine.dispose()
    assert raw
    assert not any(b"+1-" in bytes(value) for value in raw)


@pytest.mark.slow
def test_scale_one_loads_every_planned_row(learnhub_url: str) -> None:
    report = seed(learnhub_url, scale=1, seed=42)
    assert _counts(learnhub_url) == plan(1)
    assert report.total == sum(plan(1).values())
