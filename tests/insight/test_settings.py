"""The settings review, against values set in the session and the server's own.

The review reads values as the session sees them, so a ``SET`` in the session is a
real way to create most conditions without touching a server other tests share.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pgwarden.insight.findings import Finding
from pgwarden.insight.settings import (
    Setting,
    check_settings,
    reviewed_settings,
    settings_findings,
)

GB = 1024**3


def review(conn: Connection, **options: object) -> dict[str, Finding]:
    result = check_settings(conn, **options)  # type: ignore[arg-type]
    assert (result.check, result.skipped, result.error) == ("settings", None, None)
    return {f.subject or "": f for f in result.findings}


def show(conn: Connection, name: str) -> str:
    return str(conn.execute(sa.text(f"SHOW {name}")).scalar_one())


def test_session_values_are_what_the_review_sees(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SET track_io_timing = off"))
        conn.execute(sa.text("SET track_counts = off"))
        conn.execute(sa.text("SET random_page_cost = 4"))
        conn.execute(sa.text("SET log_min_duration_statement = -1"))
        conn.execute(sa.text("SET idle_in_transaction_session_timeout = 0"))
        found = review(conn)
        conn.execute(sa.text("SET track_io_timing = on"))
        conn.execute(sa.text("SET track_counts = on"))
        conn.execute(sa.text("SET random_page_cost = 1.1"))
        conn.execute(sa.text("SET log_min_duration_statement = '250ms'"))
        conn.execute(sa.text("SET idle_in_transaction_session_timeout = '5min'"))
        fixed = review(conn)

    names = {
        "track_io_timing",
        "track_counts",
        "random_page_cost",
        "log_min_duration_statement",
        "idle_in_transaction_session_timeout",
    }
    assert names <= set(found)
    assert not names & set(fixed)

    track_counts = found["track_counts"]
    assert track_counts.severity == "critical"
    assert track_counts.what == "track_counts is off (suggested: on)"
    assert track_counts.fix == "ALTER SYSTEM SET track_counts = 'on'; SELECT pg_reload_conf();"
    assert track_counts.details["source"] == "session"
    assert "comes from a SET in this session" in track_counts.why
    io_timing = found["track_io_timing"]
    assert io_timing.severity == "info"
    assert io_timing.fix == "ALTER SYSTEM SET track_io_timing = 'on'; SELECT pg_reload_conf();"
    assert "A reload applies a change." in io_timing.why
    assert found["random_page_cost"].fix == (
        "ALTER SYSTEM SET random_page_cost = '1.1'; SELECT pg_reload_conf();"
    )
    assert found["log_min_duration_statement"].details == {
        "value": "-1",
        "suggested": "1s",
        "context": "superuser",
        "source": "session",
        "restart": False,
        "pending_restart": False,
    }
    assert found["idle_in_transaction_session_timeout"].fix == (
        "ALTER SYSTEM SET idle_in_transaction_session_timeout = '10min'; SELECT pg_reload_conf();"
    )


def test_autovacuum_off_is_critical(pg_engine: Engine) -> None:
    # autovacuum is set for the whole server only: test what this server has.
    with pg_engine.connect() as conn:
        autovacuum = show(conn, "autovacuum")
        found = review(conn)

    if autovacuum == "off":
        assert found["autovacuum"].severity == "critical"
        assert found["autovacuum"].fix == (
            "ALTER SYSTEM SET autovacuum = 'on'; SELECT pg_reload_conf();"
        )
    else:
        assert "autovacuum" not in found


def test_memory_is_judged_against_defaults_without_the_ram_size(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SET work_mem = '4MB'"))
        conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
        shared_buffers = reviewed_settings(conn)["shared_buffers"]
        found = review(conn)

    work_mem = found["work_mem"]
    assert (work_mem.severity, work_mem.fix) == ("info", None)  # no value without the RAM
    assert work_mem.details["suggested"] == (
        "25% of the server's memory divided by max_connections"
    )
    assert "maintenance_work_mem" not in found
    assert shared_buffers.bytes is not None
    assert ("shared_buffers" in found) == (shared_buffers.bytes <= 128 * 1024**2)


def test_the_ram_size_makes_memory_suggestions_concrete(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        conn.execute(sa.text("SET work_mem = '4MB'"))
        conn.execute(sa.text("SET effective_cache_size = '12GB'"))
        conn.execute(sa.text("SET maintenance_work_mem = '64MB'"))
        settings = reviewed_settings(conn)
        found = review(conn, ram_bytes=16 * GB)
        small = review(conn, ram_bytes=1 * GB)

    connections = int(settings["max_connections"].setting)
    work_mem_mb = max(16 * GB // 4 // connections // 1024**2, 4)
    assert found["work_mem"].fix == (
        f"ALTER SYSTEM SET work_mem = '{work_mem_mb}MB'; SELECT pg_reload_conf();"
    )
    assert found["maintenance_work_mem"].fix == (
        "ALTER SYSTEM SET maintenance_work_mem = '1GB'; SELECT pg_reload_conf();"
    )
    assert "effective_cache_size" not in found  # 12GB is what 16GB suggests
    shared_buffers = settings["shared_buffers"].bytes
    assert shared_buffers is not None
    if shared_buffers < 2 * GB:
        finding = found["shared_buffers"]
        assert finding.severity == "warning"
        # Only a restart applies it: no reload in the fix, and the reason says so.
        assert finding.fix == "ALTER SYSTEM SET shared_buffers = '4GB';"
        assert "A change takes a restart." in finding.why
        assert finding.details["restart"] is True
    # 1GB of memory suggests 256MB of shared_buffers; half of that is near enough.
    assert ("shared_buffers" in small) == (shared_buffers < 128 * 1024**2)
    assert "work_mem" not in small  # 1GB / 4 / connections is below the 4MB floor


def test_max_connections_threshold(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        connections = int(show(conn, "max_connections"))
        by_default = review(conn)
        strict = review(conn, max_connections=connections - 1)

    assert "max_connections" not in by_default  # the test servers allow 100 or 200
    finding = strict["max_connections"]
    assert (finding.severity, finding.fix) == ("warning", None)  # the fix is a pooler
    assert f"at most {connections - 1}, with a connection pooler" in finding.what


def test_pg_stat_statements_preloaded_or_suggested(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        preloaded = show(conn, "shared_preload_libraries")
        found = review(conn)

    if "pg_stat_statements" in preloaded:
        assert "shared_preload_libraries" not in found
    else:
        finding = found["shared_preload_libraries"]
        assert finding.severity == "info"
        libraries = [lib.strip() for lib in preloaded.split(",") if lib.strip()]
        values = ", ".join(f"'{lib}'" for lib in [*libraries, "pg_stat_statements"])
        assert finding.fix == f"ALTER SYSTEM SET shared_preload_libraries = {values};"


def test_a_list_setting_gets_one_literal_per_item() -> None:
    # The server's preload list cannot change without a restart: this row is shaped
    # as reviewed_settings() returns it for a server preloading two other libraries.
    preload = Setting(
        name="shared_preload_libraries",
        value='auto_explain, "it\'s mine"',
        setting='auto_explain, "it\'s mine"',
        unit=None,
        context="postmaster",
        source="configuration file",
        pending_restart=True,
    )
    [finding] = settings_findings([preload])
    assert finding.fix == (
        "ALTER SYSTEM SET shared_preload_libraries = "
        "'auto_explain', 'it''s mine', 'pg_stat_statements';"
    )
    assert "A change takes a restart. A changed value already waits for a restart." in finding.why


def test_settings_as_a_pg_monitor_role(pg_engine: Engine, monitor_role: str) -> None:
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SET track_io_timing = off"))
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        settings = reviewed_settings(conn)
        found = review(conn)

    # pg_monitor includes pg_read_all_settings, which shows the superuser-only ones.
    assert "shared_preload_libraries" in settings
    assert len(settings) == 13
    assert "track_io_timing" in found
