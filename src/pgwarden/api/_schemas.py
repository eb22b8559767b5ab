"""Response models made from the library's dataclasses, their properties included.

The API answers with what the library returns. A dataclass's computed properties
(``create_sql``, ``hit_ratio``) are part of what a user reads, so each dataclass gets a
pydantic model with its fields and its public properties, and nested dataclasses get
theirs: the OpenAPI document then describes every key a response holds, with an
example (:mod:`pgwarden.api._examples`).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
import warnings
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from pgwarden.api._examples import EXAMPLES

__all__ = ["list_of", "model_of", "respond"]

_models: dict[type, type[BaseModel]] = {}
T = TypeVar("T")


def _mapped(hint: Any) -> Any:
    """Return ``hint`` with every dataclass in it replaced by its model."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return model_of(hint)
    origin = typing.get_origin(hint)
    if origin is None:
        return hint
    args = tuple(_mapped(arg) for arg in typing.get_args(hint))
    if origin in (types.UnionType, Union):
        return Union[args]  # noqa: UP007 (built from a tuple)
    if origin is typing.Literal:
        return hint
    if origin is typing.Annotated:
        return hint
    return origin[args] if len(args) > 1 else origin[args[0]]


def _hint(cls: type, item: dataclasses.Field[Any]) -> Any:
    """Return the type of field ``item`` of ``cls``, resolved in its module.

    Field by field: a field kept out of the model may name a type its module imports
    only for type checking (to avoid an import cycle), which would fail the whole class.
    """
    if not isinstance(item.type, str):
        return item.type
    namespace = vars(sys.modules[cls.__module__])
    return typing.get_type_hints(
        type("_Field", (), {"__annotations__": {item.name: item.type}}),
        globalns=namespace,
    )[item.name]


def model_of(cls: type) -> type[BaseModel]:
    """Return the response model of the dataclass ``cls``: its fields and properties."""
    if cls in _models:
        return _models[cls]
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if not item.repr:
            continue  # kept out of repr: internal (a whole manifest, a token's owner)
        fields[item.name] = (_mapped(_hint(cls, item)), ...)
    for name, member in inspect.getmembers(cls, lambda m: isinstance(m, property)):
        if name.startswith("_") or member.fget is None:
            continue
        returns = typing.get_type_hints(member.fget).get("return", Any)
        fields[name] = (_mapped(returns), ...)
    with warnings.catch_warnings():
        # A field named like a BaseModel attribute (``schema``) is what the data calls it.
        warnings.filterwarnings("ignore", message="Field name .* shadows", category=UserWarning)
        example = EXAMPLES.get(cls.__name__)
        model = create_model(
            cls.__name__,
            __config__=ConfigDict(
                from_attributes=True,
                json_schema_extra=None if example is None else {"examples": [example]},
            ),
            __doc__=inspect.getdoc(cls),
            **fields,
        )
    _models[cls] = model
    return typing.cast(type[BaseModel], model)


def list_of(cls: type) -> Any:
    """Return the response type of a list of ``cls``."""
    return list[model_of(cls)]  # type: ignore[misc]


def respond(cls: type, value: Any, *, many: bool = False) -> Any:
    """Return ``value`` (a ``cls``, or a list of them with ``many``) as its model."""
    model = model_of(cls)
    if many:
        return TypeAdapter(list[model]).validate_python(value, from_attributes=True)  # type: ignore[valid-type]
    return model.model_validate(value, from_attributes=True)
