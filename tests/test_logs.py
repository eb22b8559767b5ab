from __future__ import annotations

import io
import json
import logging

from pgwarden.logs import configure_logging


def _capture(fmt: str) -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt=fmt, stream=stream)  # type: ignore[arg-type]
    return stream, logging.getLogger("pgwarden.test")


def test_json_lines_carry_the_message_and_fields() -> None:
    stream, log = _capture("json")
    log.info("backup %s finished", "b-1", extra={"rows": 12})
    record = json.loads(stream.getvalue())
    assert record["message"] == "backup b-1 finished"
    assert record["level"] == "INFO"
    assert record["logger"] == "pgwarden.test"
    assert record["rows"] == 12


def test_no_secret_reaches_a_text_or_json_line() -> None:
    for fmt in ("text", "json"):
        stream, log = _capture(fmt)
        log.warning("connecting to %s", "postgresql://app:hunter2@db/app")
        log.warning("dsn host=db password=hunter2 user=app")
        log.warning("with extra", extra={"target": "s3://key:hunter2@bucket/x"})
        try:
            raise RuntimeError("failed for postgresql://app:hunter2@db/app")
        except RuntimeError:
            log.exception("it broke")
        output = stream.getvalue()
        assert "hunter2" not in output, fmt
        assert "postgresql://app:***@db/app" in output
        assert "RuntimeError" in output  # the traceback survives, scrubbed


def test_reconfiguring_replaces_the_handler() -> None:
    configure_logging(fmt="text")
    configure_logging(fmt="json")
    handlers = [h for h in logging.getLogger("pgwarden").handlers if h.get_name() == "pgwarden"]
    assert len(handlers) == 1
