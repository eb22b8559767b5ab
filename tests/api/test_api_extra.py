"""Without the api extra, the API and `pgwarden serve` say which extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest
from click.testing import CliRunner

import pgwarden
from pgwarden.cli.main import cli
from pgwarden.errors import NotEnabled


@pytest.fixture
def without_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fastapi impossible to import, as on an install without the extra."""
    for name in list(sys.modules):
        if name in ("fastapi", "pgwarden.api") or name.startswith(("fastapi.", "pgwarden.api.")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    # The root caches the area errors it hands out: keep the re-imported ones out of it.
    for name in ("JobNotFound", "RateLimited", "ScopeMissing", "TokenNotFound", "TokenRequired"):
        monkeypatch.delitem(vars(pgwarden), name, raising=False)


@pytest.mark.usefixtures("without_fastapi")
def test_the_api_names_the_extra_to_install() -> None:
    with pytest.raises(NotEnabled, match="fastapi") as caught:
        importlib.import_module("pgwarden.api")
    assert "pip install 'pgwarden[api]'" in (caught.value.hint or "")
    # Its errors stay importable, as every area's are.
    assert importlib.import_module("pgwarden.api.errors").TokenRequired.status_code == 401


@pytest.mark.usefixtures("without_fastapi")
def test_serve_names_the_extra_to_install(pg_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", pg_url, "serve"])
    assert result.exit_code == 2
    assert "pgwarden[api]" in result.output
