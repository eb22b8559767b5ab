"""Find N+1 queries in a unit of work and name the line and the loader option that fix them.

Two patterns are caught:

- **lazy loads**: one relationship lazy-loaded again and again for objects that one
  query loaded. The report names the relationship, how often, the line that touched it,
  the line of the query that loaded the parents, and the option to add to that query
  (``selectinload`` for collections, ``joinedload`` for many-to-one);
- **repeated statements**: the same SELECT shape sent again and again from one line
  (a loop of ``session.get``, say), with the line.

Only public SQLAlchemy events are used: ``do_orm_execute`` tells a relationship load
and the object it was for, the mapper-wide ``load`` event tells which query loaded each
object. A unit of work is a :func:`watch` block; the ASGI middleware opens one per
request and the pytest plugin one per test.

A watch belongs to its context: the thread or task that opened it and the tasks and
threads started from there with a copy of it (``asyncio.to_thread``, ``anyio.to_thread``,
SQLAlchemy's ``run_sync``). One watch per process may be opened ``everywhere=True`` (the
pytest plugin's, around each test): it also gets what runs outside any watch's context,
such as a test coroutine whose context was copied before the test began, code in a
``run_in_executor`` thread, or a server task started by a fixture.
"""

from __future__ import annotations

import fnmatch
import logging
import warnings
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.orm import Mapper, QueryContext, RelationshipProperty, Session
from sqlalchemy.orm.interfaces import MANYTOONE
from sqlalchemy.orm.session import ORMExecuteState

from pgwarden.observe.callsite import CallSite, find_call_site
from pgwarden.observe.eager import track_reads
from pgwarden.observe.errors import NPlusOneDetected

__all__ = [
    "Mode",
    "NPlusOneDetected",
    "NPlusOneFinding",
    "NPlusOneWarning",
    "Watch",
    "current_watch",
    "install_orm_listeners",
    "watch",
]

log = logging.getLogger("pgwarden.observe.nplusone")

Mode = Literal["log", "warn", "raise"]
_SITE_LOOKUPS = 8
_MIXED = object()
# Loader strategies a mapper may declare itself: its design, not a query option to drop.
_EAGER_STRATEGIES = frozenset({"selectin", "subquery", "immediate", "joined"})
_LOAD_KEY = "_pgwarden_load_site"
RELATIONSHIP_LOAD = "_pgwarden_relationship_load"

_current: ContextVar[Watch | None] = ContextVar("pgwarden_watch", default=None)
# The watch opened everywhere=True: what runs outside any watch's context is its.
_everywhere: Watch | None = None


class NPlusOneWarning(UserWarning):
    """Warned for each N+1 found when a watch's mode is ``warn``."""


@dataclass(frozen=True)
class NPlusOneFinding:
    """One N+1 pattern found in a unit of work."""

    kind: Literal["lazy_load", "repeated_statement", "unused_eager_load"]
    count: int
    trigger: CallSite | None
    relationship: str | None = None
    parent_query: CallSite | None = None
    parents_loaded: int = 0
    fix: str | None = None
    statement: str | None = None
    # what part of the unit of work ran it, when the watch says (a test's fixture setup)
    during: str | None = None

    @property
    def key(self) -> str:
        """Return what an allow-list entry matches: the relationship, else the location."""
        return self.relationship or (self.trigger.location if self.trigger else "?")

    def message(self) -> str:
        """Return the finding as one line a developer can act on."""
        text = self._text()
        return f"during {self.during}: {text}" if self.during else text

    def _text(self) -> str:
        where = self.trigger.location if self.trigger else "an unknown line"
        if self.kind == "unused_eager_load":
            origin = self.parent_query.location if self.parent_query else "an unknown line"
            return (
                f"unused eager load: {self.relationship} was loaded with the "
                f"{self.parents_loaded} rows of the query at {origin} and never read; "
                f"drop {self.fix} from that query"
            )
        if self.kind == "lazy_load":
            parents = f" for {self.parents_loaded} rows" if self.parents_loaded else ""
            origin = self.parent_query.location if self.parent_query else "an unknown line"
            return (
                f"N+1: {self.relationship} lazy-loaded {self.count} times at {where}"
                f"{parents} loaded at {origin}; add {self.fix} to that query"
            )
        return (
            f"N+1: the same statement ran {self.count} times from {where}: "
            f"{(self.statement or '')[:160]}; load the rows in one query (IN, a join, "
            "or an eager loader) instead of one per item"
        )


@dataclass
class _LazyGroup:
    relationship: RelationshipProperty[Any]
    parent_query: CallSite | None
    during: str | None
    count: int = 0
    triggers: Counter[CallSite | None] = field(default_factory=Counter)


@dataclass
class Watch:
    """One unit of work being watched for N+1 queries."""

    name: str = "watch"
    mode: Mode = "warn"
    threshold: int = 2
    allow: tuple[str, ...] = ()
    #: What part of the unit of work runs now (the pytest plugin names a test's fixtures):
    #: findings are grouped and marked by it.
    during: str | None = None
    #: The watch this one reports to when it ends.
    parent: Watch | None = field(default=None, repr=False, compare=False)
    closed: bool = False
    _lazy: dict[tuple[CallSite | None, str, str | None], _LazyGroup] = field(default_factory=dict)
    _repeats: Counter[tuple[str, CallSite | None, str | None]] = field(default_factory=Counter)
    _statements: dict[str, str] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)
    _last_site: dict[str, Any] = field(default_factory=dict)  # CallSite, None or _MIXED
    _loaded: weakref.WeakKeyDictionary[Any, CallSite | None] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _rows: Counter[tuple[CallSite | None, type, str | None]] = field(default_factory=Counter)
    statements: int = 0
    db_seconds: float = 0.0
    # what watches nested in this one found (a request's, inside a test's)
    _inherited: list[NPlusOneFinding] = field(default_factory=list)
    # eager loads: (query line, relationship key) -> [relationship, option, read?, during]
    _eager: dict[tuple[CallSite | None, str], list[Any]] = field(default_factory=dict)

    # -- fed by the listeners ----------------------------------------------------

    def loaded(self, state: Any, site: CallSite | None) -> None:
        """Record that ``state`` was loaded by the query at ``site``."""
        self._loaded[state] = site
        self._rows[(site, state.class_, self.during)] += 1

    def lazy_load(
        self, parent: Any, relationship: RelationshipProperty[Any], trigger: CallSite | None
    ) -> None:
        """Record a lazy load of ``relationship``, at ``trigger``, for the state ``parent``."""
        origin = self._loaded.get(parent)
        name = relationship.key + "@" + relationship.parent.class_.__qualname__
        key = (origin, name, self.during)
        group = self._lazy.get(key)
        if group is None:
            group = self._lazy[key] = _LazyGroup(relationship, origin, self.during)
        group.count += 1
        group.triggers[trigger] += 1

    def eager_load(
        self, relationship: RelationshipProperty[Any], site: CallSite | None, option: str
    ) -> None:
        """Record that ``relationship`` was eager-loaded for the rows of the query at ``site``."""
        key = (site, relationship.key)
        if key not in self._eager:
            self._eager[key] = [relationship, option, False, self.during]
            track_reads(relationship, current_watch)

    def read(self, instance: object, key: str) -> None:
        """Record a read of relationship ``key`` on ``instance`` (from the read tracker)."""
        if not self._eager:
            return
        state = getattr(instance, "_sa_instance_state", None)
        entry = self._eager.get((self._loaded.get(state), key)) if state is not None else None
        if entry is not None:
            entry[2] = True

    def statement(self, fingerprint: str, statement: str) -> None:
        """Record one SELECT (not a relationship load) of shape ``fingerprint``.

        Finding the calling line walks the stack, which costs more than everything else
        pgwarden does per statement; so each shape's line is looked up for its first few
        runs only, enough to group them, and later runs count against the last line seen.
        """
        seen = self._seen.get(fingerprint, 0) + 1
        self._seen[fingerprint] = seen
        last = self._last_site.get(fingerprint, _MIXED)
        if seen <= _SITE_LOOKUPS or last is _MIXED:
            site = find_call_site()
            if seen == 1:
                self._statements[fingerprint] = statement
                self._last_site[fingerprint] = site
            elif site is not last:
                self._last_site[fingerprint] = _MIXED  # several lines: keep looking each time
        else:
            site = last  # every lookup so far gave this one line
        if site is not None:  # no application line (all library code): nothing to point at
            self._repeats[(fingerprint, site, self.during)] += 1

    # -- reading -----------------------------------------------------------------

    def findings(self) -> list[NPlusOneFinding]:
        """Return the N+1 patterns found so far, allow-listed ones left out."""
        found: list[NPlusOneFinding] = []
        for group in self._lazy.values():
            if group.count < self.threshold:
                continue
            trigger = group.triggers.most_common(1)[0][0]
            found.append(
                NPlusOneFinding(
                    kind="lazy_load",
                    count=group.count,
                    trigger=trigger,
                    relationship=_name(group.relationship),
                    parent_query=group.parent_query,
                    parents_loaded=self._parents(group),
                    fix=suggested_fix(group.relationship),
                    during=group.during,
                )
            )
        for (fp, site, during), count in self._repeats.items():
            if count >= max(self.threshold, 2):
                found.append(
                    NPlusOneFinding(
                        kind="repeated_statement",
                        count=count,
                        trigger=site,
                        statement=self._statements[fp],
                        during=during,
                    )
                )
        for (site, _key), (relationship, option, read, during) in self._eager.items():
            if not read:
                found.append(
                    NPlusOneFinding(
                        kind="unused_eager_load",
                        count=1,
                        trigger=site,
                        relationship=_name(relationship),
                        parent_query=site,
                        parents_loaded=self._parents_at(site, relationship, during),
                        fix=f"{option}({_name(relationship)})",
                        during=during,
                    )
                )
        found.extend(self._inherited)
        return [finding for finding in found if not self._allowed(finding)]

    def _parents(self, group: _LazyGroup) -> int:
        return self._parents_at(group.parent_query, group.relationship, group.during)

    def _parents_at(
        self,
        origin: CallSite | None,
        relationship: RelationshipProperty[Any],
        during: str | None,
    ) -> int:
        """Count the rows the query at ``origin`` loaded, in part ``during`` if it ran there."""
        owner = relationship.parent.class_
        counts = Counter(
            {
                part: count
                for (site, cls, part), count in self._rows.items()
                if site == origin and issubclass(cls, owner)
            }
        )
        return counts[during] or sum(counts.values())

    def _allowed(self, finding: NPlusOneFinding) -> bool:
        names = [finding.key]
        if finding.trigger is not None:
            names += [finding.trigger.location, finding.trigger.filename]
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.allow for name in names)

    def report(self) -> None:
        """Log, warn or raise about the findings, as the mode says.

        What nested watches found was reported by them; it is only raised here again.
        Unused eager loads waste work but break nothing: they are logged and warned,
        never raised.
        """
        findings = self.findings()
        own = [finding for finding in findings if finding not in self._inherited]
        for finding in own:
            log.warning(finding.message(), extra={"nplusone": finding.kind, "watch": self.name})
            if self.mode == "warn":
                warnings.warn(finding.message(), NPlusOneWarning, stacklevel=3)
        if own:
            _notify(own)
        failing = [finding for finding in findings if finding.kind != "unused_eager_load"]
        if self.mode == "raise" and failing:
            raise NPlusOneDetected(failing)


_finding_hooks: list[Any] = []


def _notify(findings: list[NPlusOneFinding]) -> None:
    for hook in list(_finding_hooks):
        hook(findings)


def on_findings(hook: Any) -> None:
    """Call ``hook(findings)`` whenever a watch reports (metrics and Sentry use this)."""
    if hook not in _finding_hooks:
        _finding_hooks.append(hook)


def remove_findings_hook(hook: Any) -> None:
    """Stop calling ``hook``; nothing happens if it was not registered."""
    if hook in _finding_hooks:
        _finding_hooks.remove(hook)


def _name(relationship: RelationshipProperty[Any]) -> str:
    return f"{relationship.parent.class_.__name__}.{relationship.key}"


def suggested_fix(relationship: RelationshipProperty[Any]) -> str:
    """Return the loader option that loads ``relationship`` with its parents."""
    single = relationship.direction is MANYTOONE or not relationship.uselist
    loader = "joinedload" if single else "selectinload"
    return f".options({loader}({_name(relationship)}))"


def current_watch() -> Watch | None:
    """Return the watch of the current unit of work, if any.

    That is the innermost open watch of this context; else (outside any watch's
    context, or in a task that outlived the watch it was started in) the watch opened
    ``everywhere=True``, if one is open.
    """
    current = _current.get()
    while current is not None and current.closed:
        current = current.parent
    return current if current is not None else _everywhere


@contextmanager
def watch(
    name: str = "watch",
    *,
    mode: Mode = "warn",
    threshold: int = 2,
    allow: Iterable[str] = (),
    everywhere: bool = False,
) -> Iterator[Watch]:
    """Watch the block for N+1 queries, and report them at its end as ``mode`` says.

    ``threshold`` is how many lazy loads of one relationship (or runs of one statement
    from one line) make an N+1. ``allow`` holds glob patterns matched against the
    relationship (``Content.author``), the trigger's ``path:line`` or its file.
    In ``raise`` mode the block ends with :class:`NPlusOneDetected` unless it is already
    ending with another exception.

    The watch sees this context and what it starts. With ``everywhere=True`` it also
    sees what runs in the process outside any watch's context (tasks made before it
    began, threads started without the context): meant for one unit of work at a time
    per process, such as a test. A watch reports what it found to the one that was
    current where it began (else to the ``everywhere`` one) when it ends.
    """
    global _everywhere
    install_orm_listeners()
    current = Watch(
        name=name, mode=mode, threshold=threshold, allow=tuple(allow), parent=current_watch()
    )
    previous = _everywhere
    token = None
    if everywhere:
        _everywhere = current
    else:
        token = _current.set(current)
    failed = False
    try:
        yield current
    except BaseException:
        failed = True
        raise
    finally:
        current.closed = True
        if token is None:
            _everywhere = previous
        else:
            try:
                _current.reset(token)
            except ValueError:  # ended in another context than it began (an async fixture)
                _current.set(current.parent)
        parent = current.parent
        while parent is not None and parent.closed:
            parent = parent.parent
        if parent is None and not everywhere:
            parent = _everywhere
        if parent is not None:  # the enclosing unit of work sees what this one saw
            parent.statements += current.statements
            parent.db_seconds += current.db_seconds
            parent._inherited.extend(
                replace(finding, during=parent.during)
                if parent.during and not finding.during
                else finding
                for finding in current.findings()
            )
        if not failed:
            current.report()


# -- the ORM listeners, installed once per process ------------------------------------

_installed = False


def _on_orm_execute(state: ORMExecuteState) -> None:
    current = current_watch()
    if current is None or not state.is_select:
        return
    site = find_call_site()
    if state.is_relationship_load:
        # The parents' query line, which an eager load's statement inherits.
        origin = state.execution_options.get(_LOAD_KEY)
        # Objects a lazy load brings are attributed to the line that triggered it, so a
        # nested N+1 (each comment's author, for comments loaded per post) groups too.
        state.update_execution_options(**{RELATIONSHIP_LOAD: True, _LOAD_KEY: site})
        parent = state.lazy_loaded_from
        path = state.loader_strategy_path
        prop = getattr(path, "prop", None) if path is not None else None
        if isinstance(prop, RelationshipProperty):
            if parent is not None:
                current.lazy_load(parent, prop, site)
            elif str(prop.lazy) not in _EAGER_STRATEGIES:
                # selectinload() / subqueryload() asked for by the query (a mapper's own
                # lazy="selectin" is its design, not a query option to drop).
                where = origin if isinstance(origin, CallSite) else site
                current.eager_load(prop, where, "selectinload")
        return
    state.update_execution_options(**{_LOAD_KEY: site})


def _on_load(target: Any, context: QueryContext) -> None:
    current = current_watch()
    if current is None:
        return
    site = context.execution_options.get(_LOAD_KEY)
    site = site if isinstance(site, CallSite) else None
    state = target._sa_instance_state
    current.loaded(state, site)
    compiled = context.compile_state
    if compiled is not None and getattr(compiled, "eager_joins", None):
        # joinedload: the related rows came in this statement and are already populated.
        for prop in state.mapper.relationships:
            if prop.key in state.dict and str(prop.lazy) != "joined":
                current.eager_load(prop, site, "joinedload")


def install_orm_listeners() -> None:
    """Attach the process-wide ORM listeners (idempotent; they idle outside a watch)."""
    global _installed
    if _installed:
        return
    event.listen(Session, "do_orm_execute", _on_orm_execute)
    event.listen(Mapper, "load", _on_load)
    _installed = True
