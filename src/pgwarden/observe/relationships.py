"""Audit an application's ORM relationships for N+1 risk, without running it.

``audit_relationships(module)`` imports nothing itself: give it an imported module (or
a declarative base, or a list of mapped classes) and it lists every relationship with
its loader strategy, the N+1 risk that strategy carries, and a better one where there is.
``pgwarden audit-orm MODULE`` is the same from the command line.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from sqlalchemy.orm import Mapper, RelationshipProperty
from sqlalchemy.orm.interfaces import MANYTOMANY, MANYTOONE, ONETOMANY

from pgwarden.errors import UserError

__all__ = ["RelationshipAudit", "audit_relationships", "import_models"]

Risk = Literal["high", "medium", "low", "none"]
_DIRECTION = {MANYTOONE: "many-to-one", ONETOMANY: "one-to-many", MANYTOMANY: "many-to-many"}


@dataclass(frozen=True)
class RelationshipAudit:
    """One relationship, how it loads, and what that risks."""

    relationship: str
    direction: str
    strategy: str
    risk: Risk
    why: str
    suggestion: str | None


def import_models(target: str) -> ModuleType:
    """Import the module (and, for a package, its submodules) named ``target``."""
    try:
        module = importlib.import_module(target)
    except Exception as exc:
        raise UserError(
            f"cannot import {target!r}: {exc}.",
            hint="Give a dotted module path importable from here (set PYTHONPATH if needed).",
        ) from None
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{module.__name__}."):
            if ".migrations" in info.name or ".tests" in info.name:
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # any error in the user's module, reported cleanly
                raise UserError(
                    f"cannot import {info.name!r} (part of {target!r}): "
                    f"{type(exc).__name__}: {exc}.",
                    hint="Fix that module, or point audit-orm at the module holding the models.",
                ) from None
    return module


def _mappers(source: ModuleType | type | Iterable[type]) -> list[Mapper[Any]]:
    registries = []
    if isinstance(source, ModuleType):
        prefix = source.__name__
        candidates = [
            value
            for name, module in list(sys.modules.items())
            if module is not None and (name == prefix or name.startswith(prefix + "."))
            for value in vars(module).values()
            if inspect.isclass(value)
        ]
    elif (
        isinstance(source, type)
        and hasattr(source, "registry")
        and not hasattr(source, "__mapper__")
    ):
        candidates = [source]  # a declarative base: all of its models
    else:
        wanted = [source] if isinstance(source, type) else list(source)
        return sorted(
            {mapper for cls in wanted if (mapper := getattr(cls, "__mapper__", None)) is not None},
            key=lambda mapper: mapper.class_.__name__,
        )
    for value in candidates:
        registry = getattr(value, "registry", None)
        if registry is not None and hasattr(registry, "mappers") and registry not in registries:
            registries.append(registry)
    return sorted(
        {mapper for registry in registries for mapper in registry.mappers},
        key=lambda mapper: mapper.class_.__name__,
    )


def _direction(prop: RelationshipProperty[Any]) -> str:
    if prop.direction is ONETOMANY and not prop.uselist:
        return "one-to-one"
    return _DIRECTION.get(prop.direction, str(prop.direction))


def _judge(prop: RelationshipProperty[Any]) -> tuple[Risk, str, str | None]:
    strategy = str(prop.lazy)
    collection = prop.direction is not MANYTOONE and prop.uselist
    if strategy in ("select", "True"):
        if collection:
            return (
                "high",
                "each parent loads its collection with one more query when touched",
                'lazy="selectin", or lazy="raise" and selectinload() where it is needed',
            )
        return (
            "medium",
            "each parent loads its target with one more query when touched "
            "(unless the identity map has it)",
            'lazy="raise", and joinedload() where it is needed',
        )
    if strategy == "immediate":
        return ("high", "loads per parent, one query each, as the parents load", 'lazy="selectin"')
    if strategy == "joined" and collection:
        return (
            "low",
            "a joined collection multiplies the parent rows",
            'lazy="selectin" for large collections',
        )
    if strategy in ("dynamic", "write_only"):
        return ("low", "queried explicitly on each use", None)
    if strategy in ("raise", "raise_on_sql"):
        return ("none", "an unplanned load fails loudly", None)
    return ("none", f"loaded with its parents ({strategy})", None)


def audit_relationships(source: ModuleType | type | Iterable[type]) -> list[RelationshipAudit]:
    """Return every relationship of the models in ``source`` with its risk, riskiest first."""
    results = []
    for mapper in _mappers(source):
        for prop in mapper.relationships:
            if prop.parent is not mapper:
                continue  # inherited: reported on the class that declares it
            risk, why, suggestion = _judge(prop)
            results.append(
                RelationshipAudit(
                    relationship=f"{mapper.class_.__name__}.{prop.key}",
                    direction=_direction(prop),
                    strategy=str(prop.lazy),
                    risk=risk,
                    why=why,
                    suggestion=suggestion,
                )
            )
    order = {"high": 0, "medium": 1, "low": 2, "none": 3}
    return sorted(results, key=lambda item: (order[item.risk], item.relationship))
