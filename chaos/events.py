"""Probes and actions for the events pipeline: outboxes drained, one mail per order, poison.

The invariant of every events experiment: **every confirmed or cancelled order
produces exactly one notification mail**, counted from the SMTP sink's files
(``<state dir>/mail/new``, what `redline up`'s sink received), one per
Message-ID (the event id: a copy re-sent across a crash carries the same one).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import nats

from chaos import load as load_module
from chaos.context import MARKS, Configuration, stack, state_dir
from redline.mail_sink import by_message_id, read_maildir

OUTBOXES = ("orders", "accounts")


def _backlog(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("outbox_backlog_events"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def outbox_backlog(configuration: Configuration | None = None) -> dict[str, Any]:
    """Unpublished events in each outbox now (the relays' gauge, as scraped)."""
    info = stack(configuration)
    per = {name: _backlog(info.url(name)) for name in OUTBOXES}
    return {**per, "total": sum(per.values())}


def outboxes_drained(within: float, configuration: Configuration | None = None) -> dict[str, Any]:
    """Wait until every outbox is empty; ``seconds`` it took (None: it did not)."""
    started = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - started <= within:
        try:
            last = outbox_backlog(configuration)
        except httpx.HTTPError as exc:
            last = {"error": repr(exc), "total": -1}
        if last.get("total") == 0:
            return {**last, "seconds": round(time.monotonic() - started, 2)}
        time.sleep(0.25)
    return {**last, "seconds": None}


def _finished_orders(orders_url: str, users: list[Any]) -> dict[str, str]:
    """{order id: status} of the load users' confirmed and cancelled orders."""
    out: dict[str, str] = {}
    with httpx.Client(timeout=10) as client:
        for user in users:
            offset = 0
            while True:
                page = client.get(
                    f"{orders_url}/orders",
                    params={"limit": 100, "offset": offset},
                    headers=user.headers,
                ).json()["items"]
                out.update({o["id"]: o["status"] for o in page if o["status"] != "pending"})
                if len(page) < 100:
                    break
                offset += 100
    return out


def mail_per_order(
    load: str, within: float = 30.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Every finished order of the load has exactly one mail (by Message-ID); waits ``within``.

    ``violations`` = orders with no mail + orders with more than one.
    """
    users = load_module.get(load).users
    maildir = state_dir(configuration) / "mail"
    started = time.monotonic()
    while True:
        orders = _finished_orders(stack(configuration).url("orders"), users)
        ids_by_order: dict[str, set[str]] = {order_id: set() for order_id in orders}
        raw = 0
        for message_id, copies in by_message_id(read_maildir(maildir)).items():
            subject = str(copies[0]["Subject"])
            for order_id in ids_by_order:
                if order_id in subject:
                    ids_by_order[order_id].add(message_id)
                    raw += len(copies)
        missing = [o for o, ids in ids_by_order.items() if not ids]
        doubled = [o for o, ids in ids_by_order.items() if len(ids) > 1]
        elapsed = time.monotonic() - started
        if (not missing and not doubled) or elapsed > within:
            return {
                "orders": len(orders),
                "confirmed": sum(1 for s in orders.values() if s == "confirmed"),
                "cancelled": sum(1 for s in orders.values() if s == "cancelled"),
                "mails": raw,
                "missing": len(missing),
                "duplicated": len(doubled),
                "examples": {"missing": missing[:3], "duplicated": doubled[:3]},
                "violations": len(missing) + len(doubled),
                "seconds": round(elapsed, 2),
            }
        time.sleep(0.5)


async def _publish(url: str, subject: str, payload: bytes, message_id: str) -> int:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        ack = await nc.jetstream().publish(
            subject, payload, headers={"Nats-Msg-Id": message_id}, timeout=5
        )
        return int(ack.seq)
    finally:
        await nc.close()


def publish_poison(
    subject: str = "events.order.confirmed",
    mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Publish an event no consumer can process (an unknown major version) to the stream."""
    info = stack(configuration)
    message_id = str(uuid.uuid4())
    body = json.dumps({"id": message_id, "type": subject.removeprefix("events."), "version": 99})
    seq = asyncio.run(
        _publish(f"nats://{info.host}:{info.port('nats')}", subject, body.encode(), message_id)
    )
    if mark:
        MARKS.set(mark)
    return {"subject": subject, "message_id": message_id, "stream_sequence": seq}
