"""Notice reads of eager-loaded relationships, so a watch can report the unused ones.

SQLAlchemy has no event for reading an attribute that is already loaded, so pgwarden
gives each relationship attribute that it sees eager-loaded inside a watch a subclass of
its descriptor class whose ``__get__`` tells the current watch, then does exactly what
the original does. Column attributes, and relationships never eager-loaded in a watch,
are untouched; outside a watch the added cost is one lookup of the current watch per read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import InstrumentedAttribute, RelationshipProperty

__all__ = ["track_reads"]

_tracked: dict[type, type] = {}
_watch: Callable[[], Any] | None = None


def _tracking_class(base: type) -> type:
    found = _tracked.get(base)
    if found is None:

        class Tracked(base):  # type: ignore[misc]
            __slots__ = ()

            def __get__(self, instance: object | None, owner: Any) -> Any:
                if instance is not None and _watch is not None:
                    current = _watch()
                    if current is not None:
                        current.read(instance, self.key)
                return super().__get__(instance, owner)

        Tracked.__name__ = f"Tracked{base.__name__}"
        Tracked.__qualname__ = Tracked.__name__
        found = _tracked[base] = Tracked
    return found


def track_reads(relationship: RelationshipProperty[Any], current_watch: Callable[[], Any]) -> None:
    """Make reads of ``relationship`` visible to the watch that ``current_watch()`` returns."""
    global _watch
    _watch = current_watch
    for mapper in relationship.parent.self_and_descendants:
        attribute = mapper.class_manager.get(relationship.key)
        if (
            isinstance(attribute, InstrumentedAttribute)
            and type(attribute) not in _tracked.values()
        ):
            attribute.__class__ = _tracking_class(type(attribute))
