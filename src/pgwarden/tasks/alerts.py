"""Send alerts: one interface, three senders (the log, a webhook, e-mail).

An :class:`Alert` is sent when an incident opens (a failed backup or verify, a new
critical finding, a target that cannot be reached, a job overdue) and once more when it
clears (``state="recovered"``). Which incidents are open is kept in the catalogue
(:mod:`pgwarden.tasks.catalogue`), so each is announced once, whichever worker sees it.

A sender that fails is logged and the others still send: an alert channel that is down
must not stop the job that raised the alert, nor the other channels.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pgwarden.tasks.config import AlertsConfig
from pgwarden.urls import redact_text

__all__ = [
    "Alert",
    "LogNotifier",
    "Notifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "notifiers_for",
    "send_alert",
]

log = logging.getLogger("pgwarden.tasks.alerts")

AlertState = Literal["open", "recovered"]


@dataclass(frozen=True)
class Alert:
    """One message about an incident: it opened, or it cleared.

    ``key`` names the incident within its target (``unreachable``, ``job:backup``,
    ``finding:unused_indexes:public.ix``, ``overdue:backup``); ``kind`` is its family.
    """

    target: str
    key: str
    kind: str
    state: AlertState
    message: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """Return a one-line subject: ``[pgwarden] app: backup failed``."""
        head = "RECOVERED" if self.state == "recovered" else "ALERT"
        return f"[pgwarden] {head} {self.target}: {self.message.splitlines()[0][:150]}"

    def to_json(self) -> dict[str, Any]:
        """Return the alert as the JSON object a webhook receives."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["subject"] = self.subject
        return data


class Notifier(Protocol):
    """Something that delivers alerts; ``send`` raises if it could not."""

    def send(self, alert: Alert) -> None:
        """Deliver ``alert``."""


class LogNotifier:
    """Write alerts to the ``pgwarden.tasks.alerts`` logger: errors, recoveries as info."""

    def send(self, alert: Alert) -> None:
        """Log ``alert``."""
        level = logging.INFO if alert.state == "recovered" else logging.ERROR
        log.log(level, "%s", alert.subject, extra={"alert": alert.to_json()})


class WebhookNotifier:
    """POST each alert as JSON to a URL, retrying with backoff on failure."""

    def __init__(
        self, url: str, *, retries: int = 3, timeout: float = 10.0, backoff: float = 0.5
    ) -> None:
        self.url = url
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff

    @property
    def shown(self) -> str:
        """Return the URL without what may hold a token: its path, query and user."""
        parts = urlsplit(self.url)
        return (
            f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/..."
        )

    def send(self, alert: Alert) -> None:
        """POST ``alert``; raise :class:`OSError` after the last attempt fails."""
        body = json.dumps(alert.to_json(), default=str).encode("utf-8")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(  # noqa: S310 - an http(s) URL the user configured
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "pgwarden"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    if 200 <= response.status < 300:
                        return
                    last = OSError(f"HTTP {response.status}")
            except (urllib.error.URLError, OSError) as exc:
                last = exc
        raise OSError(
            f"webhook {self.shown} failed after {self.retries + 1} attempts: "
            f"{redact_text(str(last))}"
        )


class SmtpNotifier:
    """Send each alert as a plain-text e-mail through an SMTP server."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 25,
        sender: str = "pgwarden@localhost",
        recipients: Sequence[str] = (),
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.user = user
        self._password = password
        self.starttls = starttls
        self.timeout = timeout

    def send(self, alert: Alert) -> None:
        """Send ``alert`` to every recipient."""
        message = EmailMessage()
        message["Subject"] = alert.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        lines = [alert.message, "", f"target: {alert.target}", f"incident: {alert.key}"]
        lines += [f"{key}: {value}" for key, value in sorted(alert.details.items())]
        message.set_content("\n".join(lines) + "\n")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as client:
            if self.starttls:
                client.starttls()
            if self.user is not None:
                client.login(self.user, self._password or "")
            client.send_message(message)


def notifiers_for(config: AlertsConfig) -> list[Notifier]:
    """Return the senders the ``[alerts]`` table configures."""
    found: list[Notifier] = []
    if config.log:
        found.append(LogNotifier())
    if config.webhook_url:
        found.append(WebhookNotifier(config.webhook_url, retries=config.webhook_retries))
    if config.smtp_host:
        found.append(
            SmtpNotifier(
                config.smtp_host,
                port=config.smtp_port,
                sender=config.smtp_from,
                recipients=config.smtp_to,
                user=config.smtp_user,
                password=config.smtp_password,
                starttls=config.smtp_starttls,
            )
        )
    return found


def send_alert(notifiers: Iterable[Notifier], alert: Alert) -> list[str]:
    """Send ``alert`` through every notifier; return the errors of those that failed."""
    errors = []
    for notifier in notifiers:
        try:
            notifier.send(alert)
        except Exception as exc:  # one channel down must not silence the others
            message = f"{type(notifier).__name__}: {redact_text(str(exc))}"
            log.warning("could not send the alert %r: %s", alert.subject, message)
            errors.append(message)
    return errors
