"""Sessions that route each statement to the primary or a replica of a :class:`ReplicaSet`.

    Session = routing_sessionmaker(ReplicaSet.from_settings())
    AsyncSession = async_routing_sessionmaker(ReplicaSet.from_settings(use_async=True))

The async session runs the same sync :class:`RoutingSession` inside it, as SQLAlchemy
does for every ``AsyncSession``: one routing code path for both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.sql import CompoundSelect, Select
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement

from pgwarden.orm.replica_scope import WorkUnit, current_unit, primary_forced
from pgwarden.orm.replicas import ReplicaSet

__all__ = ["RoutingSession", "async_routing_sessionmaker", "routing_sessionmaker"]

ROUTE_OPTION = "route"
"""Execution option: ``"primary"`` sends a read there, ``"replica"`` lets text SQL go
to a replica (it says it only reads)."""


def is_write(clause: ClauseElement | None) -> bool:
    """Return whether ``clause`` may write (or lock rows): it must run on the primary."""
    if clause is None:
        return False
    if isinstance(clause, UpdateBase):
        return True
    if isinstance(clause, Select):
        return clause._for_update_arg is not None
    if isinstance(clause, CompoundSelect):
        return False
    # Text SQL, DDL, a bare function call: it may write unless the caller says not.
    options = getattr(clause, "_execution_options", {})
    return bool(options.get(ROUTE_OPTION) != "replica")


class RoutingSession(Session):
    """A Session that reads from replicas and writes to the primary of ``replicas``.

    Reads of one transaction go to one replica (a consistent snapshot); a transaction
    that writes keeps its later reads on the primary, and so does the unit of work
    (the :func:`~pgwarden.orm.routing_scope`, else this session until it is closed).
    A replica that cannot be connected to is set aside and the read goes to the next
    one, or to the primary; a write is never retried anywhere.
    """

    def __init__(self, bind: Any = None, *, replicas: ReplicaSet, **kwargs: Any) -> None:
        super().__init__(bind=bind if bind is not None else replicas.primary, **kwargs)
        self.replicas = replicas
        self._own_unit = WorkUnit()
        self._read_bind: Engine | None = None
        self._wrote_in_transaction = False

    def unit(self) -> WorkUnit:
        """Return the unit of work this session records its writes in."""
        return current_unit() or self._own_unit

    def get_bind(
        self,
        mapper: Any = None,
        *,
        clause: ClauseElement | None = None,
        bind: Any = None,
        **kw: Any,
    ) -> Any:
        """Return the primary or a replica for ``clause`` (see the class)."""
        if bind is not None:
            return bind
        replicas = self.replicas
        unit = self.unit()
        if self._flushing or is_write(clause):
            self._wrote_in_transaction = True
            unit.wrote, unit.write_lsn = True, None
            replicas.count("writes")
            replicas.count("to_primary")
            return replicas.primary
        options = getattr(clause, "_execution_options", {})
        fresh_enough = replicas.lsn_read_your_writes and unit.write_lsn is not None
        if (
            clause is None  # session.connection(): whatever comes, the primary
            or primary_forced()
            or options.get(ROUTE_OPTION) == "primary"
            or self._wrote_in_transaction
            or (unit.wrote and not fresh_enough)
        ):
            replicas.count("to_primary")
            return replicas.primary
        if self._read_bind is None:
            self._read_bind = replicas.choose(min_lsn=unit.write_lsn if fresh_enough else None)
        replicas.count("to_primary" if self._read_bind is replicas.primary else "to_replica")
        return self._read_bind

    def _connection_for_bind(
        self, engine: Any, execution_options: Any = None, **kw: Any
    ) -> Connection:
        # The one place a replica's failure to connect is seen before any statement ran
        # on it: set it aside and give the read to the next one (or the primary).
        # Session._connection_for_bind is private; SQLAlchemy 2.1 leaves the transaction
        # usable when connecting fails, which this relies on.
        tried: list[Engine] = []
        while True:
            try:
                return super()._connection_for_bind(engine, execution_options, **kw)
            except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as exc:
                if engine is not self._read_bind or not self.replicas.is_replica(engine):
                    raise
                assert isinstance(engine, Engine)
                self.replicas.mark_failed(engine, exc)
                tried.append(engine)
                unit = self.unit()
                lsn = unit.write_lsn if self.replicas.lsn_read_your_writes else None
                engine = self._read_bind = self.replicas.choose(min_lsn=lsn, skip=tried)

    def close(self) -> None:
        """Close the session; its own unit of work ends with it."""
        super().close()
        self._own_unit = WorkUnit()


@event.listens_for(RoutingSession, "after_commit")
def _after_commit(session: RoutingSession) -> None:
    if session._wrote_in_transaction and session.replicas.lsn_read_your_writes:
        session.unit().write_lsn = session.replicas.current_lsn()


@event.listens_for(RoutingSession, "after_transaction_end")
def _after_transaction_end(session: RoutingSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session._read_bind = None
        session._wrote_in_transaction = False


def routing_sessionmaker(replicas: ReplicaSet, **kwargs: Any) -> sessionmaker[RoutingSession]:
    """Return a sessionmaker of :class:`RoutingSession` over ``replicas`` (sync engines)."""
    return sessionmaker(class_=RoutingSession, replicas=replicas, **kwargs)


def async_routing_sessionmaker(
    replicas: ReplicaSet, **kwargs: Any
) -> async_sessionmaker[AsyncSession]:
    """Return an async_sessionmaker whose sessions route through ``replicas`` (async engines)."""
    return async_sessionmaker(sync_session_class=RoutingSession, replicas=replicas, **kwargs)
