"""A webhook receiver for Alertmanager: alerts become log lines.

Alertmanager needs somewhere to send notifications; in `redline up` that is
this sink, which prints each firing or resolved alert into the stack's log
stream (and keeps the last ones for `redline status`), so a developer sees
an alert fire next to the service logs that explain it. docker compose runs
the same sink as the ``alert-sink`` container (``python -m
redline.alert_sink``): ``docker compose logs alert-sink`` shows what
Alertmanager sent. ``GET /health`` answers 200 for the container's health check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertSink:
    def __init__(self, host: str, port: int, say: Callable[[str], None]) -> None:
        self.received: deque[dict[str, Any]] = deque(maxlen=200)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/health" else 404)
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver = self.path.rsplit("/", 1)[-1]
                for alert in payload.get("alerts", []):
                    sink.received.append({"receiver": receiver, **alert})
                    labels = alert.get("labels", {})
                    summary = alert.get("annotations", {}).get("summary", "")
                    say(
                        f"[{receiver}] {alert.get('status', '?').upper()} "
                        f"{labels.get('alertname', '?')} ({labels.get('severity', '?')}, "
                        f"service={labels.get('service', '-')}): {summary}"
                    )
                self.send_response(200)
                self.end_headers()

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def serve_forever(self) -> None:
        """Serve in the calling thread (the compose container's main loop)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def start(self) -> AlertSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m redline.alert_sink",
        description="Print Alertmanager's webhook notifications, one line per alert.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    sink = AlertSink(args.host, args.port, lambda line: print(line, flush=True))
    print(f"alert sink listening on {sink.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sink.serve_forever()


if __name__ == "__main__":
    main()
