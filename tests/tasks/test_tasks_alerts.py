"""The alert senders, each against a real server on loopback: HTTP for webhooks, SMTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from fleet_support import Webhook
from tasks_support import RecordingNotifier

from pgwarden.tasks import parse_fleet
from pgwarden.tasks.alerts import (
    Alert,
    LogNotifier,
    SmtpNotifier,
    WebhookNotifier,
    notifiers_for,
    send_alert,
)
from pgwarden.testing.servers import free_port

ALERT = Alert("app", "job:backup", "job_failed", "open", "backup failed on app: disk full")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_a_webhook_gets_the_alert_as_json_after_retries(webhook: Webhook) -> None:
    webhook.failures_left = 2
    WebhookNotifier(webhook.url, retries=3, backoff=0.01).send(ALERT)
    [body] = webhook.received
    assert body["target"] == "app" and body["key"] == "job:backup" and body["state"] == "open"
    assert body["subject"] == "[pgwarden] ALERT app: backup failed on app: disk full"
    assert body["at"].endswith("+00:00")


def test_a_webhook_that_keeps_failing_does_not_stop_the_others(webhook: Webhook) -> None:
    webhook.failures_left = 10
    other = RecordingNotifier()
    failing = WebhookNotifier(webhook.url + "?token=s3cret", retries=1, backoff=0.01)
    errors = send_alert([failing, other], ALERT)
    assert other.alerts == [ALERT]
    [error] = errors
    assert "failed after 2 attempts" in error and "s3cret" not in error
    assert webhook.received == []


def test_an_email_goes_to_every_recipient(smtp: tuple[int, _Inbox]) -> None:
    port, inbox = smtp
    notifier = SmtpNotifier(
        "127.0.0.1", port=port, sender="pgwarden@ops.test", recipients=["a@ops.test", "b@ops.test"]
    )
    notifier.send(ALERT)
    recovered = Alert("app", "job:backup", "job_failed", "recovered", "cleared: backup failed")
    notifier.send(recovered)
    (to, first), (_, second) = inbox.messages
    assert to == ["a@ops.test", "b@ops.test"]
    assert first["Subject"] == "[pgwarden] ALERT app: backup failed on app: disk full"
    assert "incident: job:backup" in first.get_payload()
    assert second["Subject"].startswith("[pgwarden] RECOVERED app")


def test_the_log_sender(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pgwarden.tasks.alerts"):
        LogNotifier().send(ALERT)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "backup failed on app" in record.getMessage()


def test_the_alerts_table_chooses_the_senders() -> None:
    port = 2525
    fleet = parse_fleet(
        {
            "alerts": {
                "webhook_url_env": "HOOK",
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_to": "ops@ops.test",
                "smtp_password_env": "SMTP_PASSWORD",
                "smtp_user": "pgwarden",
            }
        },
        environ={"HOOK": "http://127.0.0.1:9/hook?token=x", "SMTP_PASSWORD": "pw"},
    )
    kinds = [type(n).__name__ for n in notifiers_for(fleet.alerts)]
    assert kinds == ["LogNotifier", "WebhookNotifier", "SmtpNotifier"]
    assert "pw" not in repr(fleet.alerts)
