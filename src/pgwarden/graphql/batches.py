"""Load one relationship for many parents in one statement, through the caller's session.

This is the synchronous core of :mod:`pgwarden.graphql`: the DataLoaders call it (an
``AsyncSession`` through ``run_sync``), and so can any code that holds a list of
parents. The statement goes through the session, so what the session applies to its
ORM statements applies here too: soft-delete filters (``do_orm_execute`` hooks with
``with_loader_criteria``), the row-level security settings of its connection, and its
identity map (a row already loaded comes back as the same object).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, inspect, select, tuple_
from sqlalchemy.orm import (
    InstrumentedAttribute,
    Mapper,
    QueryableAttribute,
    RelationshipProperty,
    Session,
    aliased,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.interfaces import MANYTOMANY
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause

from pgwarden.graphql.errors import UnsupportedRelationship

__all__ = ["BATCH_SIZE", "RelationshipPlan", "load_related", "relationship_plan"]

# Parents per statement: few enough keys to stay far below the server's bound-parameter
# limit, many enough that a page of a GraphQL list is one statement.
BATCH_SIZE = 500

_RANK = "_pgwarden_rank"
_KEY = "_pgwarden_key"


@dataclass(frozen=True)
class RelationshipPlan:
    """How to batch one relationship: which parent columns key it, and where they meet."""

    relationship: RelationshipProperty[Any]
    name: str
    # Columns of the parent whose values identify what to load for it.
    parent_columns: tuple[ColumnElement[Any], ...]
    # The same values on the loaded side: the target's columns, or the secondary table's.
    key_columns: tuple[ColumnElement[Any], ...]
    many: bool

    @property
    def target(self) -> Mapper[Any]:
        """Return the mapper of what the relationship loads."""
        return self.relationship.mapper


def _name(relationship: RelationshipProperty[Any]) -> str:
    return f"{relationship.parent.class_.__name__}.{relationship.key}"


def _equalities(clause: ColumnElement[Any]) -> list[tuple[Any, Any]] | None:
    """Return the ``column = column`` pairs an AND of them is made of, else ``None``."""
    if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
        pairs: list[tuple[Any, Any]] = []
        for part in clause.clauses:
            found = _equalities(part)
            if found is None:
                return None
            pairs += found
        return pairs
    if (
        isinstance(clause, BinaryExpression)
        and clause.operator is operators.eq
        and isinstance(clause.left, ColumnClause)
        and isinstance(clause.right, ColumnClause)
    ):
        return [(clause.left, clause.right)]
    return None


def relationship_plan(attribute: Any) -> RelationshipPlan:
    """Return how to batch ``attribute`` (``Content.comments``), or say why it cannot be.

    Joins must be an AND of ``column = column`` equalities (the usual foreign key joins,
    composite keys included); a relationship with another ``primaryjoin`` or
    ``secondaryjoin`` raises :class:`UnsupportedRelationship` naming it.
    """
    prop = getattr(attribute, "property", None)
    if not isinstance(attribute, QueryableAttribute) or not isinstance(prop, RelationshipProperty):
        raise UnsupportedRelationship(
            f"{attribute!r} is not a relationship attribute of a mapped class.",
            hint="Pass the class attribute, as in get_loader(info, Content.comments).",
        )
    name = _name(prop)
    joins = [prop.primaryjoin] + ([prop.secondaryjoin] if prop.secondaryjoin is not None else [])
    for join in joins:
        if _equalities(join) is None:
            raise UnsupportedRelationship(
                f"{name} joins on {join}, which is not an AND of column = column; "
                "its rows cannot be matched to their parents in one batch.",
                hint=f"Load {name} with selectinload() on the parent query, or map a "
                "relationship whose join is column = column for the loader.",
            )
    if prop.direction is MANYTOMANY:
        pairs = [(parent, secondary) for parent, secondary in prop.synchronize_pairs]
    else:
        pairs = list(prop.local_remote_pairs or ())
    if not pairs:
        raise UnsupportedRelationship(
            f"{name} has no columns pairing a parent with what it loads.",
            hint=f"Load {name} with selectinload() on the parent query.",
        )
    return RelationshipPlan(
        relationship=prop,
        name=name,
        parent_columns=tuple(local for local, _ in pairs),
        key_columns=tuple(remote for _, remote in pairs),
        many=bool(prop.uselist),
    )


def _parent_key(mapper: Mapper[Any], plan: RelationshipPlan, parent: object) -> tuple[Any, ...]:
    return tuple(
        getattr(parent, mapper.get_property_by_column(column).key) for column in plan.parent_columns
    )


def _statement(
    plan: RelationshipPlan,
    keys: list[tuple[Any, ...]],
    order_by: Sequence[ColumnElement[Any]],
    limit: int | None,
) -> Select[Any]:
    """Return the one SELECT of every target row of ``keys``, each tagged with its key."""
    prop = plan.relationship
    entity = plan.target.class_
    labels = [column.label(f"{_KEY}{i}") for i, column in enumerate(plan.key_columns)]
    base = select(entity, *labels)
    if prop.secondary is not None:
        base = base.join(prop.secondary, prop.secondaryjoin)
    if len(plan.key_columns) == 1:
        matching = plan.key_columns[0].in_([key[0] for key in keys])
    else:
        matching = tuple_(*plan.key_columns).in_(keys)
    # The target's key breaks ties, so a page per parent is the same on every run.
    ordering = [*order_by]
    ordering += [key for key in plan.target.primary_key if not _mentions(ordering, key)]
    if limit is None:
        return base.where(matching).order_by(*ordering)
    rank = func.row_number().over(partition_by=plan.key_columns, order_by=ordering)
    ranked = base.add_columns(rank.label(_RANK)).where(matching).subquery()
    row = aliased(entity, ranked)
    return (
        select(row, *(ranked.c[label.name] for label in labels))
        .where(ranked.c[_RANK] <= limit)
        .order_by(*(ranked.c[label.name] for label in labels), ranked.c[_RANK])
    )


def _mentions(ordering: list[ColumnElement[Any]], column: ColumnElement[Any]) -> bool:
    """Tell whether ``column`` already orders ``ordering`` (plain or ASC/DESC)."""
    return any(getattr(clause, "element", clause).compare(column) for clause in ordering)


def _from_identity_map(
    session: Session, plan: RelationshipPlan, key: tuple[Any, ...]
) -> object | None:
    """Return the many-to-one target already in the session, as a lazy load would."""
    target = plan.target
    primary = target.primary_key
    if len(plan.key_columns) != len(primary) or not all(
        column.compare(key) for column, key in zip(plan.key_columns, primary, strict=True)
    ):
        return None
    found: object | None = session.identity_map.get(
        target.identity_key_from_primary_key(tuple(key))
    )
    if found is None or inspect(found).expired_attributes:
        return None  # an expired object would refresh itself: one query each, not one in all
    return found


def load_related(
    session: Session,
    attribute: InstrumentedAttribute[Any],
    parents: Sequence[object],
    *,
    order_by: Sequence[ColumnElement[Any]] | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Load ``attribute`` for all ``parents`` in one statement (one per :data:`BATCH_SIZE`
    parents); return, in order, each parent's related object (``None`` if none) or list.

    ``order_by`` orders each parent's list (the relationship's own ``order_by`` when not
    given; the target's primary key always breaks ties); ``limit`` keeps the first
    ``limit`` of each list, ranked by ``ROW_NUMBER() OVER (PARTITION BY ...)`` in the
    same statement. Without either, the loaded values also fill the parents' attribute,
    so reading ``parent.comments`` afterwards sends no query.
    """
    plan = relationship_plan(attribute)
    prop = plan.relationship
    if limit is not None and (limit < 0 or not plan.many):
        raise UnsupportedRelationship(
            f"limit={limit} for {plan.name}: a limit needs a collection and a count >= 0.",
            hint="Give a limit only to one-to-many and many-to-many relationships.",
        )
    own_order = order_by is None
    if order_by is None:
        order_by = list(prop.order_by or ()) if plan.many else []
    mapper = inspect(parents[0]).mapper if parents else prop.parent
    keys = [_parent_key(mapper, plan, parent) for parent in parents]
    wanted = {key for key in keys if None not in key}
    found: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    if not plan.many:
        for key in list(wanted):
            known = _from_identity_map(session, plan, key)
            if known is not None:
                found[key].append(known)
                wanted.discard(key)
    if wanted and limit != 0:
        ordered = sorted(wanted, key=repr)
        # In batches, as selectinload does: one IN list of every key could pass the
        # server's 65,535 bound parameters. Each parent's rows come from one batch.
        for start in range(0, len(ordered), BATCH_SIZE):
            batch = ordered[start : start + BATCH_SIZE]
            for row in session.execute(_statement(plan, batch, list(order_by), limit)):
                found[tuple(row[1:])].append(row[0])
    results: list[Any] = [
        list(found.get(key, ())) if plan.many else next(iter(found.get(key, ())), None)
        for key in keys
    ]
    if own_order and limit is None:
        for parent, value in zip(parents, results, strict=True):
            if prop.key not in inspect(parent).dict:
                set_committed_value(parent, prop.key, list(value) if plan.many else value)
    return results
