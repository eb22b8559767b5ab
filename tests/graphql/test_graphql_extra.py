"""Without the graphql extra (strawberry) the loaders name the extra to install; without
the api extra (FastAPI) so do the pagination dependencies, and paging itself works."""

from __future__ import annotations

import importlib
import sys

import pytest

from pgwarden.errors import NotEnabled


def _hide(monkeypatch: pytest.MonkeyPatch, package: str, *modules: str) -> None:
    for name in list(sys.modules):
        if name == package or name.startswith(f"{package}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_loaders_name_the_graphql_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "strawberry", "pgwarden.graphql", "pgwarden.graphql.loaders")
    with pytest.raises(NotEnabled, match="strawberry-graphql") as caught:
        importlib.import_module("pgwarden.graphql")
    assert "pip install 'pgwarden[graphql]'" in (caught.value.hint or "")


def test_pagination_dependencies_name_the_api_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "fastapi", "pgwarden.orm.pagination_fastapi")
    from pgwarden.orm import keyset_page  # paging needs no extra

    assert callable(keyset_page)
    with pytest.raises(NotEnabled, match="fastapi") as caught:
        importlib.import_module("pgwarden.orm.pagination_fastapi")
    assert "pip install 'pgwarden[api]'" in (caught.value.hint or "")
