"""A real SMTP server that keeps what it receives: where notifications "send" mail.

aiosmtpd on its own thread (as the alert sink is an HTTP server on its own), so
``redline up`` and the tests run it in-process. Each accepted message is a
file in a Maildir (``new/``, written to ``tmp/`` and renamed, so a reader never
sees half a mail): ``mails()`` parses them back. ``python -m redline.mail_sink``
runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import threading
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink.receiving += 1
        if self.sink.delay:  # a slow mail server, for experiments
            await asyncio.sleep(self.sink.delay)
        self.sink.store(envelope.content)
        return "250 Message accepted for delivery"


class MailSink:
    def __init__(
        self, host: str, port: int, maildir: Path, say: Callable[[str], None] | None = None
    ) -> None:
        self.host, self.port, self.maildir = host, port, maildir
        self.say = say
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname=host, port=port)
        self._lock = threading.Lock()
        self.count = 0
        # Seconds each message is held before it is stored and acknowledged.
        self.delay = 0.0
        self.receiving = 0  # DATA commands begun

    def start(self) -> MailSink:
        self._controller.start()  # returns once the server accepts connections
        return self

    def stop(self) -> None:
        self._controller.stop()

    def store(self, content: bytes) -> None:
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.redline"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(content)
        os.replace(tmp, self.maildir / "new" / name)
        with self._lock:
            self.count += 1
        if self.say is not None:
            msg = email.message_from_bytes(content, policy=email.policy.default)
            self.say(f"mail to {msg['To']}: {msg['Subject']}")

    def mails(self) -> list[EmailMessage]:
        return read_maildir(self.maildir)


def by_message_id(mails: list[EmailMessage]) -> dict[str, list[EmailMessage]]:
    """Mails grouped by Message-ID: a re-sent notification keeps its event's id."""
    out: dict[str, list[EmailMessage]] = {}
    for m in mails:
        out.setdefault(str(m["Message-ID"]), []).append(m)
    return out


def read_maildir(maildir: Path) -> list[EmailMessage]:
    out = []
    for path in sorted((maildir / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", type=Path, default=Path(".redline/mail"))
    args = parser.parse_args()
    sink = MailSink(args.host, args.port, args.maildir, say=print).start()
    print(f"SMTP sink on {args.host}:{args.port}, mail in {args.maildir}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main()
