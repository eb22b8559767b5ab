"""One realistic example of each response, shown in the OpenAPI document and its docs UI.

Keyed by the name of the library dataclass (or API model) it illustrates; the models
made by :func:`~pgwarden.api._schemas.model_of` carry theirs. A test checks that every
response model of the document has one and that each validates against its schema.
"""

from __future__ import annotations

from typing import Any

_INDEX_KEY = {
    "column": "customer_id",
    "descending": False,
    "expression": None,
    "calls": [],
    "label": "customer_id",
    "sql": '"customer_id"',
}
_CREATE_INDEX = (
    'CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" ("customer_id");'
)
_DROP_INDEX = 'DROP INDEX CONCURRENTLY "public"."orders_customer_id_idx";'

__all__ = ["EXAMPLES"]

_AT = "2026-03-02T03:00:04Z"
_LATER = "2026-03-02T03:01:10Z"

_SESSION: dict[str, Any] = {
    "pid": 4121, "user": "app", "database": "app", "application": "api",
    "client": "10.0.3.7", "backend_type": "client backend", "state": "active",
    "wait_event_type": "Lock", "wait_event": "transactionid",
    "backend_start": "2026-03-02T02:55:00Z", "xact_start": _AT, "query_start": _AT,
    "duration_s": 12.5, "xact_age_s": 12.5, "blocked_by": [4098], "leader_pid": None,
    "query": "UPDATE orders SET status = $1 WHERE id = $2",
}  # fmt: skip
_BLOCKER: dict[str, Any] = {
    "pid": 4098, "user": "app", "database": "app", "application": "worker",
    "client": "10.0.3.9", "state": "idle in transaction", "duration_s": 40.2,
    "xact_age_s": 41.0, "blocked_by": [], "waits_for": None,
    "query": "SELECT * FROM orders WHERE id = $1 FOR UPDATE",
}  # fmt: skip
_VERIFY: dict[str, Any] = {
    "backup_id": "20260302T030004Z-9f3a1c", "verified_at": _LATER, "ok": True,
    "scratch": "pgwarden_verify_9f3a1c", "server_version": "17.2", "restore_seconds": 41.7,
    "row_checks": [{"table": "public.orders", "expected": 120000, "actual": 120000, "ok": True}],
    "amcheck": {"available": True, "reason": None, "indexes_checked": 14, "failures": [],
                "ok": True},
    "error": None,
}  # fmt: skip
_TABLE: dict[str, Any] = {
    "oid": 16410, "schema": "public", "name": "orders", "kind": "table",
    "size_bytes": 52_428_800, "size_exact": True, "live_tuples": 120000, "dead_tuples": 18000,
    "last_vacuum": None, "last_autovacuum": "2026-03-01T22:10:00Z", "last_analyze": None,
    "last_autoanalyze": "2026-03-01T22:10:02Z", "dead_pct": 13.04, "qualified": "public.orders",
}  # fmt: skip
_SNAPSHOT: dict[str, Any] = {
    "id": 42, "taken_at": _AT, "server_version": "17.2", "statements_tracked": True,
    "figures": {"database_bytes": 734_003_200, "connections": 23, "commits": 9_120_331,
                "rollbacks": 1_204, "deadlocks": 0},
    "relations": 61, "statements": 180,
}  # fmt: skip
_BASE_BACKUP: dict[str, Any] = {
    "id": "20260302T010000Z-5b21e0", "cluster": "main", "system_identifier": "7339012345678901234",
    "server_version": "17.2", "major": 17, "timeline": 1, "start_lsn": "0/5000028",
    "stop_lsn": "0/5000120", "segment_size": 16_777_216, "started_at": "2026-03-02T01:00:00Z",
    "ended_at": "2026-03-02T01:02:31Z", "size": 312_000_000, "sha256": "9c1e" + "0" * 60,
    "plain_size": 1_020_000_000, "key_id": "k1", "incremental_from": None,
    "prefix": "main/physical/20260302T010000Z-5b21e0/",
    "tar_key": "main/physical/20260302T010000Z-5b21e0/base.tar.zst.enc",
}  # fmt: skip

EXAMPLES: dict[str, dict[str, Any]] = {
    "Liveness": {"status": "ok"},
    "Readiness": {"status": "ready", "database": "app", "server_version": "17.2",
                  "latency_ms": 0.41, "error": None},
    "ErrorBody": {"error": {"type": "ScopeMissing",
                            "message": "this route needs the operate scope; the token has read.",
                            "hint": "Use a token created with `pgwarden tokens create --scope "
                                    "operate`."}},
    "Summary": {"database": "app", "server_version": "17.2", "checked_at": _AT,
                "duration_s": 0.42, "checks_run": 31,
                "counts": {"critical": 0, "warning": 2, "info": 5},
                "by_check": {"unused_indexes": 2, "bloat": 1},
                "skipped": [{"check": "statements", "reason": "pg_stat_statements is not loaded"}],
                "failed": []},
    "Snapshot": _SNAPSHOT,
    "History": {"snapshots": [_SNAPSHOT]},
    "Finding": {"check": "unused_indexes", "severity": "warning",
                "what": "index public.orders_note_idx was never scanned",
                "why": "it costs 48 MB and slows every write to public.orders",
                "fix": 'DROP INDEX CONCURRENTLY "public"."orders_note_idx";',
                "subject": "public.orders_note_idx", "details": {"size_bytes": 50_331_648}},
    "QueryStats": {"queryid": 4_611_686_018_427_387_903,
                   "query": "SELECT * FROM orders WHERE customer_id = $1", "calls": 120_000,
                   "total_ms": 84_000.5, "mean_ms": 0.7, "rows": 360_000, "share": 0.31,
                   "shared_blks_hit": 9_800_000, "shared_blks_read": 12_000,
                   "hit_ratio": 0.9988},
    "ServerSession": _SESSION,
    "BlockedQuery": {**{k: _SESSION[k] for k in ("pid", "user", "database", "application",
                                                 "client", "query")},
                     "waits_for": "transactionid", "waiting_s": 12.5, "xact_age_s": 12.5,
                     "blocked_by": [4098], "blockers": [_BLOCKER], "root_pids": [4098],
                     "depth": 1, "roots": [_BLOCKER]},
    "ConnectionUsage": {"connections": 23, "max_connections": 100, "reserved_connections": 3,
                        "by_state": {"active": 4, "idle": 18, "idle in transaction": 1},
                        "sources": [{"database": "app", "user": "app", "application": "api",
                                     "client": "10.0.3.7", "connections": 20,
                                     "by_state": {"active": 3, "idle": 17}}],
                        "available": 74, "fraction_used": 0.2371},
    "DatabaseSize": {"database": "app", "size_bytes": 734_003_200},
    "TableSize": {"schema": "public", "table": "orders", "total_bytes": 52_428_800,
                  "heap_bytes": 36_700_160, "toast_bytes": 1_048_576,
                  "index_bytes": 14_680_064, "estimated_rows": 120_000},
    "IndexSize": {"schema": "public", "table": "orders", "index": "orders_pkey",
                  "size_bytes": 2_703_360},
    "RelationGrowth": {"schema": "public", "name": "events", "kind": "table",
                       "table_name": None, "before_bytes": 104_857_600,
                       "after_bytes": 157_286_400, "before_rows": 1_000_000,
                       "after_rows": 1_500_000, "days": 7.0, "bytes_per_day": 7_489_828.57,
                       "delta_bytes": 52_428_800},
    "UnusedIndex": {"schema": "public", "table": "orders", "index": "orders_note_idx",
                    "scans": 0, "size_bytes": 50_331_648},
    "DuplicateIndex": {"schema": "public", "table": "orders", "index": "orders_customer_idx",
                       "covering_index": "orders_customer_created_idx", "exact": False,
                       "size_bytes": 2_703_360,
                       "definition": "CREATE INDEX orders_customer_idx ON public.orders "
                                     "USING btree (customer_id)",
                       "covering_definition": "CREATE INDEX orders_customer_created_idx ON "
                                              "public.orders USING btree (customer_id, "
                                              "created_at)"},
    "CancelResult": {"pid": 4121, "action": "cancel", "statement": "SELECT pg_cancel_backend(4121)",
                     "session": _SESSION, "dry_run": True, "delivered": False, "ended": None},
    "Table": _TABLE,
    "MaintenanceReport": {"command": "vacuum", "dry_run": True,
                          "settings": {"maintenance_work_mem": "256MB"},
                          "operations": [{"command": "vacuum", "target": _TABLE,
                                          "statement": 'VACUUM (ANALYZE) "public"."orders"',
                                          "status": "planned", "seconds": None, "error": None,
                                          "hint": None, "blockers": [], "warnings": []}],
                          "warnings": [], "below_threshold": 12, "failed": [], "ok": True,
                          "statements": ['VACUUM (ANALYZE) "public"."orders"']},
    "IndexAdvice": {"method": "hypopg", "method_reason": "HypoPG is installed",
                    "recommendations": [{
                        "schema": "public", "table": "orders", "name": "orders_customer_id_idx",
                        "keys": [_INDEX_KEY],
                        "predicate": None,
                        "queries": [{"sql": "SELECT * FROM orders WHERE customer_id = $1",
                                     "calls": 120_000, "cost_before": 2_410.0,
                                     "cost_after": 8.3, "factor": 290.4}],
                        "size_bytes": 2_703_360, "size_source": "hypopg", "write_heavy": False,
                        "notes": [], "columns": ["customer_id"], "using": "btree",
                        "pages_per_range": None, "include": [], "partitions": [],
                        "on_parent": False, "replaces": [], "writes": 5_200,
                        "candidate": {"table_oid": 16403, "schema": "public", "table": "orders",
                                      "keys": [_INDEX_KEY], "predicate": None, "unordered": 1,
                                      "predicate_columns": [], "using": "btree",
                                      "pages_per_range": None, "include": [],
                                      "columns": ["customer_id"], "shape": "(customer_id)"},
                        "create_sql": _CREATE_INDEX, "drop_sql": _DROP_INDEX,
                        "statements": [_CREATE_INDEX], "drop_statements": [_DROP_INDEX]}],
                    "queries_analyzed": 40, "candidates_tried": 12, "skipped": [],
                    "unserved": [{"sql": "SELECT count(*) FROM orders", "reason":
                                  "reads the whole table: no index would serve it"}],
                    "sampled_tables": [], "notes": [], "alembic_revision": None},
    "Job": {"id": "b81c2f0e", "kind": "backup", "arguments": {}, "status": "running",
            "started_at": _AT, "ended_at": None,
            "progress": {"phase": "dump", "done": 104_857_600, "total": 734_003_200},
            "result": None, "error": None, "hint": None},
    "AuditEntry": {"id": 311, "at": _AT, "token_id": 2, "method": "POST",
                   "route": "/v1/database/backups", "arguments": {}, "outcome": "started",
                   "status": 202, "detail": None},
    "BackupEntry": {"id": "20260302T030004Z-9f3a1c", "database": "app",
                    "prefix": "app/logical/20260302T030004Z-9f3a1c/", "complete": True,
                    "started_at": _AT, "ended_at": "2026-03-02T03:00:52Z", "size": 98_304_000,
                    "objects": 64, "pinned": False, "verification": _VERIFY,
                    "kind": "logical", "status": "complete", "verified_at": _LATER},
    "PitrStatus": {"cluster": "main", "base_backups": [_BASE_BACKUP],
                   "window_start": "2026-03-02T01:02:31Z",
                   "newest_segment": "000000010000000000000042", "archived_files": 62,
                   "archived_bytes": 1_040_187_392, "timelines": [1], "forks": [], "gaps": [],
                   "last_drill": {"id": "20260302T040000Z-d1", "started_at": "2026-03-02T04:00:00Z",
                                  "target_time": "2026-03-02T02:17:45Z", "seconds": 73.2,
                                  "ok": True, "backup_id": "20260302T010000Z-5b21e0",
                                  "wal_files": 18, "detail": "restored; 120000 rows in orders"},
                   "recoverable": True},
    "TargetStatus": {"target": "orders-prod", "url": "postgresql://app:***@db-1:5432/orders",
                     "jobs": [{"job": "backup", "cron": "0 3 * * *", "last_success": _LATER,
                               "last_success_s": 66.0, "last_failure": None,
                               "last_error": None, "next_run": "2026-03-03T03:00:00Z",
                               "failing": False, "state": "ok"},
                              {"job": "verify", "cron": "30 4 * * *", "last_success": None,
                               "last_success_s": None, "last_failure": "2026-03-02T04:31:00Z",
                               "last_error": "the scratch database could not be created",
                               "next_run": "2026-03-03T04:30:00Z", "failing": True,
                               "state": "failing"}],
                     "newest_backup": "20260302T030004Z-9f3a1c", "newest_backup_at": _AT,
                     "newest_verified": "20260301T030002Z-41d0aa",
                     "newest_verified_at": "2026-03-01T03:00:02Z",
                     "recoverable_from": "2026-02-23T03:00:01Z", "recoverable_to": _AT,
                     "complete_backups": 8,
                     "incidents": [{"id": 17, "target": "orders-prod", "key": "job:verify",
                                    "kind": "job", "message": "verify failed twice in a row",
                                    "opened_at": "2026-03-02T04:31:00Z", "closed_at": None}],
                     "problems": [], "critical_findings": [], "healthy": False},
    "NPlusOneReport": {"kind": "lazy_load", "file": "app/routes/courses.py", "line": 42,
                       "function": "list_courses", "relationship": "Course.author",
                       "fix": ".options(joinedload(Course.author))",
                       "parent_query": "app/routes/courses.py:40", "statement": None,
                       "count": 318, "queries": 6360, "first_seen": "2026-03-01T09:12:00Z",
                       "last_seen": _AT, "location": "app/routes/courses.py:42",
                       "subject": "Course.author"},
    "SlowStatementReport": {"fingerprint": "a1b2c3d4e5f60718",
                            "statement": "SELECT * FROM page_views WHERE user_id = $1 "
                                         "ORDER BY viewed_at DESC LIMIT $2",
                            "location": "app/analytics.py:88", "count": 57, "p50_ms": 212.4,
                            "p95_ms": 540.9, "max_ms": 1203.0,
                            "first_seen": "2026-03-01T09:12:00Z", "last_seen": _AT},
}  # fmt: skip
