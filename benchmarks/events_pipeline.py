"""Events through the whole pipeline: outbox → NATS JetStream → notifications → SMTP.

Starts PostgreSQL, nats-server (JetStream, file storage), an SMTP sink and
the services (one process each), signs one user up, then writes
``order.confirmed`` events straight into orders' outbox (as the saga's commit
does, one event per transaction) and lets the real relay, broker, consumer
and mail delivery carry them:

1. a burst of ``--burst`` events committed at once: events/s from the first
   commit to the last mail (the pipeline's capacity);
2. ``--seconds`` of events at ``--rate-share`` of that capacity, one commit
   at a time: p50/p95/p99 of commit → mail (``sent_at - occurred_at`` in
   notifications' table, both from the database clock of one server).

    .venv/bin/python benchmarks/events_pipeline.py [--burst 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from redline.mail_sink import MailSink
from services.events import enqueue
from tests.conftest import throwaway_postgres
from tests.harness import Platform, free_port, sign_up, wait_until
from tests.nats_server import EVENTS_ENV, NatsServer


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _order_data(user_id: str) -> dict[str, object]:
    return {
        "order_id": str(uuid.uuid4()),
        "user_id": user_id,
        "status": "confirmed",
        "reason": None,
        "total_cents": 1999,
        "currency": "USD",
    }


async def commit_events(dsn: str, user_id: str, n: int, *, rate: float | None) -> float:
    """n events, one transaction each; at ``rate`` per second if given. Returns the start."""
    conn = await asyncpg.connect(dsn)
    start = time.monotonic()
    try:
        for i in range(n):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            async with conn.transaction():
                await enqueue(
                    conn, event_type="order.confirmed", source="orders", data=_order_data(user_id)
                )
    finally:
        await conn.close()
    return start


async def delays(dsn: str, since_count: int) -> tuple[list[float], float]:
    """(commit → mail seconds per event, seconds from first commit to last mail) of the newest."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM sent_at - occurred_at) AS d, occurred_at, sent_at "
            "FROM notifications WHERE event_type = 'order.confirmed' AND status = 'sent' "
            "ORDER BY occurred_at OFFSET $1",
            since_count,
        )
    finally:
        await conn.close()
    span = (rows[-1]["sent_at"] - rows[0]["occurred_at"]).total_seconds()
    return [float(r["d"]) for r in rows], span


async def sent(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE event_type = 'order.confirmed' "
                "AND status = 'sent'"
            )
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate-share", type=float, default=0.5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redline-events-bench-"))
    with throwaway_postgres() as pg:
        dsns: dict[str, str] = {}

        def database(name: str) -> str:
            from services.chassis.db import ensure_database

            asyncio.run(ensure_database(pg.dsn(), f"bench_{name}"))
            dsns[name] = pg.dsn(f"bench_{name}")
            return dsns[name]

        nats_server = NatsServer(base / "js", base / "nats.log").start()
        sink = MailSink("127.0.0.1", free_port(), base / "mail").start()
        env = {
            "REDLINE_NATS_SERVERS": nats_server.url,
            **EVENTS_ENV,
            "REDLINE_LOG_LEVEL": "WARNING",
        }
        platform = Platform.build(
            databases=database,
            logs=base / "logs",
            otlp_endpoint=None,
            extra_env={
                "accounts": env,
                "orders": env,
                "notifications": {**env, "REDLINE_SMTP_PORT": str(sink.port)},
            },
        ).start()
        try:
            user = sign_up(platform.gateway)
            wait_until(lambda: sink.count >= 1, timeout=30, message="no welcome mail")
            orders, notifications = dsns["orders"], dsns["notifications"]

            before = asyncio.run(sent(notifications))
            asyncio.run(commit_events(orders, user.id, args.burst, rate=None))
            wait_until(
                lambda: asyncio.run(sent(notifications)) >= before + args.burst,
                timeout=600,
                interval=0.2,
                message="the burst was not mailed",
            )
            _, span = asyncio.run(delays(notifications, before))
            capacity = args.burst / span
            print(
                f"burst: {args.burst} events, first commit → last mail {span:.2f} s: "
                f"{capacity:.0f} events/s"
            )

            rate = capacity * args.rate_share
            n = int(rate * args.seconds)
            before = asyncio.run(sent(notifications))
            asyncio.run(commit_events(orders, user.id, n, rate=rate))
            wait_until(
                lambda: asyncio.run(sent(notifications)) >= before + n,
                timeout=120,
                interval=0.2,
                message="the steady events were not mailed",
            )
            steady, _ = asyncio.run(delays(notifications, before))
            ms = [d * 1000 for d in steady]
            print(
                f"steady: {n} events at {rate:.0f}/s: commit → mail p50 {_pct(ms, 50):.0f} ms, "
                f"p95 {_pct(ms, 95):.0f} ms, p99 {_pct(ms, 99):.0f} ms, "
                f"mean {statistics.fmean(ms):.0f} ms"
            )
            metrics = httpx.get(f"{platform['notifications'].url}/metrics", timeout=5).text
            dups = [line for line in metrics.splitlines() if 'outcome="duplicate"' in line]
            print(f"mails in the sink: {sink.count}; duplicates by the consumer: {dups or 0}")
        finally:
            platform.stop()
            sink.stop()
            nats_server.stop()


if __name__ == "__main__":
    main()
