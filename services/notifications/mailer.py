"""Sending a notification over SMTP (aiosmtplib), one CLIENT span per delivery."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.events.metrics import trace_exemplar
from services.notifications.metrics import MAIL_DELIVERY_DURATION

_tracer = trace.get_tracer("services.notifications.mailer")


@dataclass(frozen=True)
class Mailer:
    host: str
    port: int
    sender: str
    timeout: float = 5.0

    async def send(self, *, message_id: str, to: str, subject: str, body: str) -> None:
        """Deliver one mail. ``message_id`` is the event's: a re-send after a crash
        between delivery and bookkeeping carries the same Message-ID, which
        mail systems (and the tests) use to recognise the duplicate."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{message_id}@notifications.redline>"
        msg.set_content(body)
        with _tracer.start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": self.host,
                "server.port": self.port,
                "network.protocol.name": "smtp",
                "peer.service": "smtp",
            },
        ) as span:
            start = time.perf_counter()
            try:
                await aiosmtplib.send(msg, hostname=self.host, port=self.port, timeout=self.timeout)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                MAIL_DELIVERY_DURATION.observe(time.perf_counter() - start, trace_exemplar())
