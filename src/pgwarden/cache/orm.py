"""Serve marked ORM SELECTs from the cache, rebuilding mapped objects from column values.

A cached ORM result holds, for each mapped object, its class and the values of its
loaded column attributes and relationships (objects referenced by index, so cycles
and shared objects survive). On a hit the objects are rebuilt detached, as if loaded
by another session, and merged into the caller's session with ``load=False``: no
query, and the session's own identity map wins for objects it already holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import FrozenResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import (
    Mapper,
    ORMExecuteState,
    Session,
    loading,
    make_transient_to_detached,
    mapperlib,
)
from sqlalchemy.orm import attributes as orm_attributes
from sqlalchemy.orm.base import instance_state

from pgwarden.cache.codec import Ref
from pgwarden.cache.errors import UnserializableValue
from pgwarden.cache.tables import table_name

if TYPE_CHECKING:
    from pgwarden.cache.query_cache import QueryCache

__all__ = ["attach"]


def attach(cache: QueryCache, sessions: Any) -> None:
    """Listen to ``sessions`` (Session class or instance, sessionmaker, async ones too)."""
    if isinstance(sessions, AsyncSession):
        sessions = sessions.sync_session
    elif isinstance(sessions, async_sessionmaker):
        # A sync session class of this factory's own, so the listener stays with it.
        base = sessions.kw.get("sync_session_class", Session)
        own = type(base.__name__, (base,), {})
        sessions.kw["sync_session_class"] = own
        sessions = own

    @event.listens_for(sessions, "do_orm_execute")
    def _execute(state: ORMExecuteState) -> Any:
        return _cached(cache, state)


def _cached(cache: QueryCache, state: ORMExecuteState) -> Any:
    if not state.is_select or state.is_relationship_load or state.is_column_load:
        return None
    policy = cache.policy_for(state.statement, state.execution_options, state.all_mappers)
    if policy is None:
        return None
    session = state.session
    conn = session.connection(bind_arguments=state.bind_arguments)
    if not cache.serves(conn):
        return None  # another cache's engine, or one whose writes nobody tracks

    def load() -> tuple[Any, dict[str, Any], frozenset[str]]:
        frozen = state.invoke_statement().freeze()
        graph = _Graph()
        rows = [graph.row(row, frozen._source_supports_scalars) for row in frozen.data]
        payload = {"k": [str(k) for k in frozen.metadata.keys], "r": rows, "o": graph.objects}
        return frozen(), payload, frozenset(graph.tables)

    def rebuild(payload: dict[str, Any]) -> Any:
        objects = _rebuild(payload["o"])
        frozen = FrozenResult.__new__(FrozenResult)
        frozen.metadata = SimpleResultMetaData(payload["k"])
        frozen._source_supports_scalars = False
        frozen._attributes = sa.util.immutabledict()
        frozen.data = [tuple(_unref(v, objects) for v in row) for row in payload["r"]]
        merged = loading.merge_frozen_result(  # type: ignore[no-untyped-call]
            session, state.statement, frozen, load=False
        )
        return merged()

    params = state.parameters if isinstance(state.parameters, dict) else None
    return cache.through(conn, state.statement, params, policy, load, rebuild)


class _Graph:
    """Flatten mapped objects reachable through loaded attributes into a list."""

    def __init__(self) -> None:
        self.objects: list[list[Any]] = []
        self.tables: set[str] = set()
        self._index: dict[int, int] = {}

    def row(self, row: Any, scalar: bool) -> list[Any]:
        values = [row] if scalar else list(row)
        return [self.value(v) for v in values]

    def value(self, value: Any) -> Any:
        if value is None or sa.inspect(value, raiseerr=False) is None:
            return value
        state = instance_state(value)
        known = self._index.get(id(value))
        if known is not None:
            return Ref(known)
        index = self._index[id(value)] = len(self.objects)
        entry: list[Any] = [_class_name(state.mapper), {}, {}]
        self.objects.append(entry)
        self.tables.update(_tables(state.mapper))
        loaded = state.dict
        for prop in state.mapper.column_attrs:
            if prop.key in loaded:
                entry[1][prop.key] = loaded[prop.key]
        for rel in state.mapper.relationships:
            if rel.key not in loaded:
                continue
            secondary: Any = rel.secondary
            if secondary is not None:
                self.tables.add(table_name(secondary.schema, secondary.name))
            target = loaded[rel.key]
            if rel.uselist and not isinstance(target, list | set):
                raise UnserializableValue(
                    f"the cache cannot store the {type(target).__name__} collection "
                    f"{state.mapper.class_.__name__}.{rel.key}",
                    hint="Cache statements whose loaded collections are lists or sets, "
                    "or leave this relationship unloaded (lazy) in the cached query.",
                )
            if rel.uselist:
                kind = "set" if isinstance(target, set) else "list"
                entry[2][rel.key] = [kind, [self.value(v) for v in target]]
            else:
                entry[2][rel.key] = self.value(target)
        return Ref(index)


def _tables(mapper: Mapper[Any]) -> set[str]:
    return {table_name(getattr(t, "schema", None), t.name) for t in mapper.tables}


def _class_name(mapper: Mapper[Any]) -> str:
    return f"{mapper.class_.__module__}:{mapper.class_.__qualname__}"


_MAPPERS: dict[str, Mapper[Any]] = {}


def _mappers(name: str) -> Mapper[Any] | None:
    if name not in _MAPPERS:  # a class mapped since the last look
        _MAPPERS.update(
            (_class_name(mapper), mapper)
            for registry in list(mapperlib._mapper_registries)
            for mapper in registry.mappers
        )
    return _MAPPERS.get(name)


def _rebuild(entries: list[list[Any]]) -> list[Any]:
    objects = []
    for class_name, columns, _ in entries:
        mapper = _mappers(class_name)
        if mapper is None:
            raise LookupError(f"no mapped class {class_name}")
        obj = mapper.class_manager.new_instance()
        # Column values straight into the instance's dict: loaded, with no history.
        instance_state(obj).dict.update(columns)
        make_transient_to_detached(obj)
        objects.append(obj)
    for obj, (_, _, relations) in zip(objects, entries, strict=True):
        for key, value in relations.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                kind: Callable[[Any], Any] = set if value[0] == "set" else list
                value = kind(_unref(v, objects) for v in value[1])
            else:
                value = _unref(value, objects)
            orm_attributes.set_committed_value(obj, key, value)
    return objects


def _unref(value: Any, objects: list[Any]) -> Any:
    if type(value) is Ref:
        return objects[value]
    return value
