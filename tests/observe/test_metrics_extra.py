"""Without the metrics extra (prometheus-client), observing works; metrics name the extra."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.db.engines import create_engine
from pgwarden.errors import NotEnabled
from pgwarden.observe import instrument, uninstrument
from pgwarden_test_support import forbid_import


@pytest.fixture
def without_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make prometheus_client impossible to import, as on an install without the extra."""
    forbid_import(monkeypatch, "prometheus_client", "pgwarden.observe.metrics")


@pytest.fixture
def engine(pg_engine: Engine) -> Iterator[Engine]:
    own = create_engine(pg_engine.url)
    yield own
    uninstrument(own)
    own.dispose()


@pytest.mark.usefixtures("without_prometheus")
def test_metrics_name_the_extra_to_install() -> None:
    with pytest.raises(NotEnabled, match="prometheus-client") as caught:
        from pgwarden.observe import EngineMetrics  # noqa: F401
    assert "pip install 'pgwarden[metrics]'" in (caught.value.hint or "")
    assert caught.value.exit_code == 2


@pytest.mark.usefixtures("without_prometheus")
def test_observing_works_without_metrics(engine: Engine) -> None:
    observed = instrument(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert observed.metrics is None


@pytest.mark.usefixtures("without_prometheus")
def test_asking_for_metrics_names_the_extra(engine: Engine) -> None:
    with pytest.raises(NotEnabled, match="prometheus-client"):
        instrument(engine, metrics=True)
