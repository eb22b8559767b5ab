"""The public names: every error importable from ``pgwarden``, no two classes named alike."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import pgwarden


def _areas() -> list[ModuleType]:
    """Return every public area package of pgwarden (``pgwarden.backup``, ...)."""
    return [
        importlib.import_module(f"pgwarden.{info.name}")
        for info in pkgutil.iter_modules(pgwarden.__path__)
        if info.ispkg and not info.name.startswith("_")
    ]


def _exported_classes(module: ModuleType) -> dict[str, type]:
    names = getattr(module, "__all__", [])
    return {name: obj for name in names if inspect.isclass(obj := getattr(module, name))}


def test_every_public_name_imports_from_the_root() -> None:
    namespace: dict[str, object] = {}
    exec("from pgwarden import *", namespace)  # noqa: S102 (a fixed statement)
    missing = [name for name in pgwarden.__all__ if name not in namespace]
    assert missing == []


def test_every_error_of_an_area_is_exported_from_the_root() -> None:
    missing = [
        f"{area.__name__}.{name}"
        for area in _areas()
        for name, cls in _exported_classes(area).items()
        if issubclass(cls, Exception)
        and not issubclass(cls, Warning)
        and getattr(pgwarden, name, None) is not cls
    ]
    assert missing == []


def test_no_two_public_classes_share_a_name() -> None:
    homes: dict[str, set[str]] = {}
    for module in [pgwarden, *_areas()]:
        for name, cls in _exported_classes(module).items():
            homes.setdefault(name, set()).add(f"{cls.__module__}.{cls.__qualname__}")
    shared = {name: sorted(where) for name, where in homes.items() if len(where) > 1}
    assert shared == {}


def _public_modules() -> list[ModuleType]:
    """Return every module of pgwarden with no private part in its name."""
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(pgwarden.__path__, "pgwarden.")
        if not any(part.startswith("_") for part in info.name.split(".")[1:])
    ]


def test_no_two_classes_of_the_public_modules_share_a_name() -> None:
    """A class defined or exported by any public module has a name no other class has."""
    homes: dict[str, set[str]] = {}
    for module in [pgwarden, *_public_modules()]:
        exported = set(getattr(module, "__all__", ()))
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and not name.startswith("_")
                and cls.__module__.startswith("pgwarden.")
                and (cls.__module__ == module.__name__ or name in exported)
            ):
                homes.setdefault(name, set()).add(f"{cls.__module__}.{cls.__qualname__}")
    shared = {name: sorted(where) for name, where in homes.items() if len(where) > 1}
    assert shared == {}


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchError"):
        _ = pgwarden.NoSuchError  # type: ignore[attr-defined]


def test_importing_pgwarden_loads_no_area() -> None:
    """``import pgwarden`` stays quick: an area's errors load when first asked for."""
    code = (
        "import sys, pgwarden\nprint(sorted(m for m in sys.modules if m.startswith('pgwarden.')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert eval(loaded) == ["pgwarden.errors"]  # noqa: S307 (our own printed list)
