"""ORM patterns for SQLAlchemy 2.0 models on PostgreSQL, enforced by the database.

- :mod:`~pgwarden.orm.mixins`: a bigint identity key, ``created_at``/``updated_at`` kept
  by a trigger, soft deletes hidden from every query;
- :mod:`~pgwarden.orm.audit`: an audit log written by trigger, with the acting user;
- :mod:`~pgwarden.orm.rls`: tenant isolation by row-level security;
- :mod:`~pgwarden.orm.encryption`: AES-256-GCM keyrings with key rotation;
- :mod:`~pgwarden.orm.encrypted_columns`: encrypted columns, each value bound to its row;
- :mod:`~pgwarden.orm.search`: full-text search on a generated tsvector;
- :mod:`~pgwarden.orm.pagination`: keyset pages with signed cursors, offset pages with
  estimated totals (FastAPI dependencies in :mod:`~pgwarden.orm.pagination_fastapi`).
- :mod:`~pgwarden.orm.replicas`: reads to streaming replicas, writes to the primary;
- :mod:`~pgwarden.orm.timeouts`: statement and lock timeouts scoped to a transaction.

Each pattern that needs DDL comes both as a ``*_sql`` function (for Alembic migrations)
and as an ``install_*`` function (for ``metadata.create_all``). See docs/orm.md.
"""

from __future__ import annotations

from pgwarden.orm.audit import (
    AUDIT_FUNCTION_SQL,
    audit_log_table,
    audit_trigger_sql,
    install_audit,
    set_actor,
)
from pgwarden.orm.encrypted_columns import EncryptedString, rotate, seal
from pgwarden.orm.encryption import Keyring, keyring_from_settings
from pgwarden.orm.errors import (
    InvalidCursor,
    LockTimeout,
    StatementTimeout,
    TimeoutFired,
    UnpageableQuery,
)
from pgwarden.orm.mixins import (
    UPDATED_AT_FUNCTION_SQL,
    IdPrimaryKey,
    SoftDelete,
    Timestamps,
    enable_soft_delete_filter,
    include_deleted,
    install_updated_at_triggers,
    updated_at_trigger_sql,
)
from pgwarden.orm.pagination import (
    KeysetPage,
    OffsetPage,
    PageKey,
    keyset_page,
    offset_page,
    page_keys,
)
from pgwarden.orm.replica_sessions import (
    RoutingSession,
    async_routing_sessionmaker,
    routing_sessionmaker,
)
from pgwarden.orm.replicas import (
    ReplicaScopeMiddleware,
    ReplicaSet,
    ReplicaStatus,
    RoutingStats,
    WorkUnit,
    routing_scope,
    routing_scope_dependency,
    use_primary,
)
from pgwarden.orm.rls import RLS_CASTS, install_rls, rls_policy_sql, set_tenant
from pgwarden.orm.search import gin_index, search, tsvector_column
from pgwarden.orm.timeouts import (
    Timeouts,
    enable_timeouts,
    timeout_options,
    timeouts,
    timeouts_dependency,
)

__all__ = [
    "AUDIT_FUNCTION_SQL",
    "RLS_CASTS",
    "UPDATED_AT_FUNCTION_SQL",
    "EncryptedString",
    "IdPrimaryKey",
    "InvalidCursor",
    "Keyring",
    "KeysetPage",
    "LockTimeout",
    "OffsetPage",
    "PageKey",
    "ReplicaScopeMiddleware",
    "ReplicaSet",
    "ReplicaStatus",
    "RoutingSession",
    "RoutingStats",
    "SoftDelete",
    "StatementTimeout",
    "TimeoutFired",
    "Timeouts",
    "Timestamps",
    "UnpageableQuery",
    "WorkUnit",
    "async_routing_sessionmaker",
    "audit_log_table",
    "audit_trigger_sql",
    "enable_soft_delete_filter",
    "enable_timeouts",
    "gin_index",
    "include_deleted",
    "install_audit",
    "install_rls",
    "install_updated_at_triggers",
    "keyring_from_settings",
    "keyset_page",
    "offset_page",
    "page_keys",
    "rls_policy_sql",
    "rotate",
    "routing_scope",
    "routing_scope_dependency",
    "routing_sessionmaker",
    "seal",
    "search",
    "set_actor",
    "set_tenant",
    "timeout_options",
    "timeouts",
    "timeouts_dependency",
    "tsvector_column",
    "updated_at_trigger_sql",
    "use_primary",
]
