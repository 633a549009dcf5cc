"""Outbox → NATS JetStream → notifications → SMTP, with real processes all the way."""

from __future__ import annotations

import asyncio
import json
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import StreamInfo

from redline.mail_sink import MailSink, by_message_id
from services.events.bus import DEADLETTER_STREAM
from tests.harness import Platform, User, sign_up, traceparent, wait_until
from tests.nats_server import NatsServer
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow


def place_order(
    platform: Platform, user: User, *, payment_method: str = "pm_card_visa", **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{platform.gateway}/api/v1/orders",
        json={"items": [{"product_id": 7, "quantity": 1}], "payment_method": payment_method},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4()), **headers},
        timeout=10,
    )


def mails_about(sink: MailSink, text: str) -> list[EmailMessage]:
    return [m for m in sink.mails() if text in str(m["Subject"])]


def wait_for_mail(sink: MailSink, text: str, timeout: float = 10) -> EmailMessage:
    return wait_until(
        lambda: next(iter(mails_about(sink, text)), None),
        timeout=timeout,
        message=lambda: f"no mail about {text}; sink has {[m['Subject'] for m in sink.mails()]}",
    )


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def user(platform: Platform, mail_sink: MailSink) -> User:
    u = sign_up(platform.gateway)
    wait_until(  # user.registered reached notifications
        lambda: [m for m in mail_sink.mails() if m["To"] == u.email and "Welcome" in m["Subject"]],
        message="no welcome mail",
    )
    return u


def test_confirmed_order_sends_one_mail_listed_through_the_gateway(
    platform: Platform, mail_sink: MailSink, user: User
) -> None:
    r = place_order(platform, user)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    mail = wait_for_mail(mail_sink, order_id)
    assert "confirmed" in str(mail["Subject"])
    assert mail["To"] == user.email

    listing = wait_until(
        lambda: [
            n
            for n in httpx.get(
                f"{platform.gateway}/api/v1/notifications",
                headers=user.headers,
                timeout=5,
            ).json()["items"]
            if n["order_id"] == order_id and n["status"] == "sent"
        ],
        message="the order's notification is not listed as sent",
    )
    assert listing[0]["event_type"] == "order.confirmed"
    assert listing[0]["recipient"] == user.email
    # Someone else's token sees none of it.
    other = sign_up(platform.gateway)
    theirs = httpx.get(
        f"{platform.gateway}/api/v1/notifications", headers=other.headers, timeout=5
    ).json()["items"]
    assert all(n["order_id"] != order_id for n in theirs)
    assert len(mails_about(mail_sink, order_id)) == 1


def test_declined_order_sends_a_cancellation_mail(
    platform: Platform, mail_sink: MailSink, user: User
) -> None:
    r = place_order(platform, user, payment_method="pm_card_chargeDeclined")
    assert r.status_code == 402, r.text
    mail = wait_until(
        lambda: next(
            (
                m
                for m in mail_sink.mails()
                if m["To"] == user.email and "cancelled" in str(m["Subject"])
            ),
            None,
        ),
        message="no cancellation mail",
    )
    assert "payment_declined" in mail.get_content()


def test_the_order_trace_contains_publish_process_and_mail_delivery(
    platform: Platform, otlp: OtlpReceiver, mail_sink: MailSink, user: User
) -> None:
    header, trace_id, _ = traceparent()
    r = place_order(platform, user, traceparent=header)
    assert r.status_code == 201, r.text
    wait_for_mail(mail_sink, r.json()["id"])

    # Each process exports on its own schedule: the mail's span can arrive before
    # the relay's, so wait for each of the three by name.
    publish, process, smtp = (
        otlp.wait_for(lambda s, n=name: s.trace_id == trace_id and s.name == n)[0]  # type: ignore[misc]
        for name in (
            "publish events.order.confirmed",
            "process events.order.confirmed",
            "smtp send",
        )
    )
    assert publish.service_name == "orders"
    assert publish.kind == "PRODUCER"
    assert process.service_name == "notifications"
    assert process.kind == "CONSUMER"
    # One chain: saga span → PRODUCER → CONSUMER → SMTP client span.
    parent = otlp.wait_for(lambda s: s.span_id == publish.parent_span_id)[0]
    assert parent.service_name == "orders"
    assert process.parent_span_id == publish.span_id
    assert smtp.parent_span_id == process.span_id
    assert smtp.kind == "CLIENT"
    for span in (publish, process):
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.destination.name"] == "events.order.confirmed"
    assert publish.attributes["messaging.message.id"] == process.attributes["messaging.message.id"]
    assert process.attributes["messaging.nats.message.delivery_count"] == 1


async def _publish_raw(url: str, subject: str, payload: bytes) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await nc.close()


async def _deadletters(url: str) -> tuple[StreamInfo, Any]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(DEADLETTER_STREAM)
        last = await js.get_last_msg(DEADLETTER_STREAM, "deadletter.notifications")
        return info, last
    finally:
        await nc.close()


def test_poison_event_is_dead_lettered_after_n_deliveries_and_the_rest_flow(
    platform: Platform, platform_nats: NatsServer, mail_sink: MailSink, user: User
) -> None:
    notifications = platform["notifications"].url
    before = metric(notifications, "notifications_dead_letters_total")
    poison = json.dumps({"id": str(uuid.uuid4()), "type": "order.confirmed", "version": 99})
    asyncio.run(_publish_raw(platform_nats.url, "events.order.confirmed", poison.encode()))

    r = place_order(platform, user)
    assert r.status_code == 201
    wait_for_mail(mail_sink, r.json()["id"])  # not stuck behind the poison event

    wait_until(
        lambda: metric(notifications, "notifications_dead_letters_total") >= before + 1,
        message="the poison event was not dead-lettered",
    )
    _, last = asyncio.run(_deadletters(platform_nats.url))
    assert last.data == poison.encode()
    assert last.headers["Redline-Deliveries"] == "3"
    assert last.headers["Redline-Original-Subject"] == "events.order.confirmed"


def test_orders_confirm_while_nats_is_down_and_the_outbox_drains_after(
    platform: Platform, platform_nats: NatsServer, mail_sink: MailSink, user: User
) -> None:
    orders = platform["orders"].url
    platform_nats.kill()
    try:
        placed = [place_order(platform, user) for _ in range(3)]
        assert [r.status_code for r in placed] == [201, 201, 201]
        wait_until(
            lambda: metric(orders, "outbox_backlog_events") >= 3,
            message="the outbox backlog does not show the unsent events",
        )
        assert metric(orders, "outbox_oldest_unsent_age_seconds") > 0
    finally:
        platform_nats.start()
    for r in placed:
        wait_for_mail(mail_sink, r.json()["id"], timeout=20)
    wait_until(lambda: metric(orders, "outbox_backlog_events") == 0, message="outbox not drained")
    for r in placed:
        assert len(mails_about(mail_sink, r.json()["id"])) == 1


def test_notifications_killed_mid_batch_redelivers_and_mails_each_order_once(
    platform: Platform, mail_sink: MailSink, user: User
) -> None:
    notifications = platform["notifications"]
    notifications.kill()
    placed = [place_order(platform, user) for _ in range(6)]
    assert {r.status_code for r in placed} == {201}
    ids = [r.json()["id"] for r in placed]

    # A slow mail server holds the batch in flight; kill the consumer in the middle of it.
    started = mail_sink.receiving
    mail_sink.delay = 1.0
    try:
        notifications.start(wait_ready=False)
        wait_until(
            lambda: mail_sink.receiving >= started + 2, timeout=30, message="no delivery began"
        )
        notifications.kill()
    finally:
        mail_sink.delay = 0.0
    assert not all(mails_about(mail_sink, i) for i in ids), "the batch finished before the kill"
    notifications.start()

    for order_id in ids:
        wait_for_mail(mail_sink, order_id, timeout=45)  # after the ack wait, redelivered
    for order_id in ids:
        per_id = by_message_id(mails_about(mail_sink, order_id))
        # One notification per order; a copy the server took while the consumer
        # died before its "250" carries the same Message-ID (the SMTP window).
        assert len(per_id) == 1, per_id
    listed = httpx.get(
        f"{platform.gateway}/api/v1/notifications?limit=100",
        headers=user.headers,
        timeout=5,
    ).json()["items"]
    assert sorted(n["order_id"] for n in listed if n["order_id"] in ids) == sorted(ids)
