"""The order saga: reserve stock -> charge -> commit, compensating in reverse.

The machine, by the ``step`` column (each write happens before the call it
announces, so a crash leaves a step that says what may have happened)::

    created ──reserve──▶ reserved ──▶ charging ──charge──▶ charged ──commit──▶ confirmed
       │ out of stock /      │            │ declined          │ refused (released)
       │ unknown             │            │ unknown           ▼
       ▼                     ▼            ▼            compensating_refund
    compensating_release ◀───┴────────────┴──(declined)───────┘  │ refund
       │ release                                                 ▼
       ▼                                               compensating_release ...
    cancelled

A successful reservation records ``reserved`` and ``charging`` in one write
(``reserved`` stays a step: orders written before that may still be at it).

* A definite refusal (409 out of stock or price changed, 402 declined)
  compensates what was done; an *unknown* outcome (timeout, 5xx, breaker
  open) compensates as if the call had succeeded, because every downstream
  operation is idempotent and leaves a tombstone: releasing a reservation
  that never happened, or refunding a charge that never happened, blocks that
  call if it arrives late.
* Once charged, the saga only moves forward: a failed commit is retried (by
  the recovery loop) rather than refunding a paid order.
* Recovery (another process, or this one after a restart) takes over pending
  orders whose lease ran out: before the charge it compensates (the customer
  is long gone; do not charge them minutes later), after it, it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from opentelemetry import trace

from services.chassis import Database, ProblemError
from services.chassis.http_client import (
    Answer,
    Downstream,
    DownstreamTimeout,
    DownstreamUnavailable,
)
from services.chassis.resilience import Deadline, current_deadline, set_deadline
from services.orders import store
from services.orders.metrics import (
    ORDER_VALUE,
    ORDERS_COMPLETED,
    SAGA_COMPENSATIONS,
    SAGA_RECOVERIES,
    SAGA_STEP_FAILURES,
)
from services.orders.models import Order
from telemetry import get_logger

_log = get_logger("saga")
_tracer = trace.get_tracer("services.orders.saga")

# Compensations must finish even when the request that started the saga has
# run out of time (a charge that timed out at the deadline is refunded at once,
# not by the recovery loop a lease later): they get a budget of their own,
# which replaces the request's rather than nesting inside it.
COMPENSATION_BUDGET_SECONDS = 5.0


@contextlib.contextmanager
def _own_budget(seconds: float) -> Iterator[None]:
    token = set_deadline(Deadline.after(seconds))
    try:
        yield
    finally:
        current_deadline.reset(token)


# Cancellation reasons (the `reason` label of orders_completed_total).
OUT_OF_STOCK = "out_of_stock"
PAYMENT_DECLINED = "payment_declined"
PAYMENT_UNAVAILABLE = "payment_unavailable"
INVENTORY_UNAVAILABLE = "inventory_unavailable"
INTERRUPTED = "interrupted"
INVENTORY_CONFLICT = "inventory_conflict"
PRICE_CHANGED = "price_changed"


class Step(StrEnum):
    """The ``step`` column: the names in the machine above and in the table's CHECK."""

    CREATED = "created"
    RESERVED = "reserved"
    CHARGING = "charging"
    CHARGED = "charged"
    CONFIRMED = "confirmed"
    COMPENSATING_REFUND = "compensating_refund"
    COMPENSATING_RELEASE = "compensating_release"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """What a call to a dependency came to (``classify``), the ``saga.outcome`` of its span."""

    OK = "ok"
    REFUSED = "refused"  # a definite "no": nothing happened downstream
    UNKNOWN = "unknown"  # it may or may not have happened
    NOT_SENT = "not_sent"  # the call never reached the dependency


class _LeaseLost(Exception):
    """A step was not recorded: another process took the order over (its lease ran out)."""


@dataclass(frozen=True)
class NotSent:
    """Stands for the response of a call that never left (connection refused, breaker open)."""


def classify(response: Answer | NotSent | None) -> Outcome:
    if isinstance(response, NotSent):
        return Outcome.NOT_SENT
    if response is None or response.status_code >= 500:
        return Outcome.UNKNOWN
    if response.status_code < 300:
        return Outcome.OK
    return Outcome.REFUSED


def _problem_type(response: Answer | NotSent | None) -> str:
    if response is None or isinstance(response, NotSent):
        return ""
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except ValueError:
        return ""


@dataclass
class Pauses:
    """A test hook: hold sagas right after they record a step (admin API, off by default)."""

    after: set[str] = field(default_factory=set)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, steps: set[str]) -> None:
        self.after = set(steps)
        self._released = asyncio.Event()

    def clear(self) -> None:
        self.after = set()
        self._released.set()

    async def checkpoint(self, order_id: UUID, step: str) -> None:
        if step in self.after:
            _log.warning("saga paused", order_id=str(order_id), step=step)
            await self._released.wait()


@dataclass
class Saga:
    db: Database
    inventory: Downstream
    payments: Downstream
    owner: str
    lease_seconds: float
    pauses: Pauses = field(default_factory=Pauses)
    # Orders this process is driving right now. Its recovery loop must leave
    # them alone: it leases under the same owner, so a live driver whose lease
    # ran out during a slow call and a recovery of the same order would both
    # pass the lease check, and one could refund what the other confirms.
    driving: set[UUID] = field(default_factory=set)

    # -- plumbing ------------------------------------------------------------------
    async def _call(
        self, downstream: Downstream, method: str, path: str, template: str, json: Any = None
    ) -> Answer | NotSent | None:
        """None when the outcome is unknown; NotSent when the call certainly never arrived."""
        try:
            return await downstream.relay(
                method, path, url_template=template, json=json, idempotent=True
            )
        except (DownstreamUnavailable, DownstreamTimeout) as exc:
            _log.warning(
                "saga call failed", dependency=downstream.name, path=template, error=exc.detail
            )
            return None if exc.maybe_delivered else NotSent()

    async def _advance(
        self,
        stored: store.Stored,
        step: str,
        outcome: str,
        *,
        through: str | None = None,
        **kw: Any,
    ) -> bool:
        """Record a step (``stored`` follows it); ``_LeaseLost`` if another process has it.

        ``through``: a step passed on the way, recorded as done in the same write.
        """
        if not await store.advance(
            self.db,
            stored,
            step=step,
            outcome=outcome,
            through=through,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            **kw,
        ):
            _log.warning("saga lost its lease", order_id=str(stored.order.id), step=step)
            raise _LeaseLost
        if through is not None:
            await self.pauses.checkpoint(stored.order.id, through)
        await self.pauses.checkpoint(stored.order.id, step)
        return True

    @contextlib.contextmanager
    def _span(
        self, name: str, order_id: UUID, *, compensation: bool = False
    ) -> Iterator[trace.Span]:
        span_name = f"saga compensate {name}" if compensation else f"saga {name}"
        with _tracer.start_as_current_span(
            span_name,
            attributes={
                "order.id": str(order_id),
                "saga.step": name,
                "saga.compensation": compensation,
            },
        ) as span:
            yield span

    async def _attempt(
        self,
        name: str,
        order_id: UUID,
        downstream: Downstream,
        path: str,
        template: str,
        json: Any = None,
        *,
        compensation: bool = False,
    ) -> tuple[Outcome, Answer | NotSent | None]:
        """A step's call in its span: POST, classify the answer, put the outcome on the span."""
        with self._span(name, order_id, compensation=compensation) as span:
            response = await self._call(downstream, "POST", path, template, json)
            outcome = classify(response)
            span.set_attribute("saga.outcome", outcome.value)
        return outcome, response

    # -- the machine ---------------------------------------------------------------
    async def drive(
        self, order_id: UUID, *, recovering: bool = False, stored: store.Stored | None = None
    ) -> Order:
        """Move the order as far as it can go now; returns it as it then is.

        ``stored``: the order as just created (else it is read first).
        """
        if order_id in self.driving:
            raise ProblemError(f"Order {order_id} is being driven already.", status=409)
        self.driving.add(order_id)
        try:
            stored = stored or await self._load(order_id)
            try:
                await self._drive(stored, recovering)
            except _LeaseLost:
                return (await self._load(order_id)).order  # as the new holder left it
            return stored.order
        finally:
            self.driving.discard(order_id)

    async def _drive(self, stored: store.Stored, recovering: bool) -> None:
        """Steps until a final state, or one that must wait (a commit to retry later)."""
        order = stored.order
        while order.status == "pending":
            step = order.step
            if recovering:
                step = self._recovery_step(order)
                recovering = False
                if step != order.step:
                    SAGA_RECOVERIES.labels("compensated").inc()
                    await self._advance(stored, step, "recovered", reason=INTERRUPTED)
                    continue
                SAGA_RECOVERIES.labels("resumed").inc()
            if not await self._step(stored, step):
                return

    async def _load(self, order_id: UUID) -> store.Stored:
        async with self.db.acquire() as conn:
            found = await store.load(conn, order_id)
        if found is None:
            raise ProblemError(f"Order {order_id} vanished.", status=500)
        return found

    @staticmethod
    def _recovery_step(order: Order) -> str:
        """Where an interrupted saga resumes: compensate before the charge, commit after."""
        if order.step in (Step.CREATED, Step.RESERVED):
            return Step.COMPENSATING_RELEASE
        if order.step == Step.CHARGING:
            return Step.COMPENSATING_REFUND
        return order.step

    async def _step(self, stored: store.Stored, step: str) -> bool:
        """One step; False when the saga stops here for now (final, or to be retried later)."""
        if step == Step.CREATED:
            return await self._reserve(stored)
        if step in (Step.RESERVED, Step.CHARGING):
            return await self._charge(stored)
        if step == Step.CHARGED:
            return await self._commit(stored)
        if step == Step.COMPENSATING_REFUND:
            return await self._refund(stored)
        if step == Step.COMPENSATING_RELEASE:
            return await self._release(stored)
        raise ProblemError(f"Order {stored.order.id} is at an unknown step {step!r}.", status=500)

    async def _reserve(self, stored: store.Stored) -> bool:
        order = stored.order
        body = {
            "order_id": str(order.id),
            # Inventory refuses a price that is not the catalog's any more.
            "items": [
                {
                    "product_id": i.product_id,
                    "quantity": i.quantity,
                    "unit_price_cents": i.unit_price_cents,
                }
                for i in order.items
            ],
        }
        outcome, response = await self._attempt(
            "reserve_inventory", order.id, self.inventory, "/reservations", "/reservations", body
        )
        if outcome == Outcome.OK:
            # Reserved, and charging next: one write for both. A crash before
            # the charge leaves "charging", from which recovery refunds a charge
            # that may never have been made (a tombstone) and releases: the
            # outcome "reserved" would have led to, one refund call dearer, for
            # one round trip less on every order.
            return await self._advance(stored, Step.CHARGING, "started", through=Step.RESERVED)
        SAGA_STEP_FAILURES.labels("reserve_inventory").inc()
        if outcome == Outcome.NOT_SENT:
            # Nothing reached inventory, nothing can arrive late: nothing to undo.
            return await self._cancel(stored, INVENTORY_UNAVAILABLE, Outcome.NOT_SENT)
        if outcome == Outcome.REFUSED and _problem_type(response) == "out-of-stock":
            reason = OUT_OF_STOCK
        elif outcome == Outcome.REFUSED and _problem_type(response) == "price-changed":
            reason = PRICE_CHANGED
        elif outcome == Outcome.REFUSED:
            reason = (
                INTERRUPTED if _problem_type(response) == "reservation-conflict" else OUT_OF_STOCK
            )
        else:
            reason = INVENTORY_UNAVAILABLE
        # Even a refusal releases: it leaves the tombstone that stops a late reserve.
        return await self._advance(stored, Step.COMPENSATING_RELEASE, outcome, reason=reason)

    async def _charge(self, stored: store.Stored) -> bool:
        order = stored.order
        if order.step != Step.CHARGING:
            await self._advance(stored, Step.CHARGING, "started")
        body = {
            "order_id": str(order.id),
            "amount_cents": order.total_cents,
            "currency": order.currency,
            "payment_method": stored.payment_method,
        }
        outcome, response = await self._attempt(
            "charge_payment", order.id, self.payments, "/charges", "/charges", body
        )
        if outcome == Outcome.OK:
            return await self._advance(stored, Step.CHARGED, Outcome.OK)
        SAGA_STEP_FAILURES.labels("charge_payment").inc()
        if (
            outcome == Outcome.REFUSED
            and not isinstance(response, NotSent)
            and response is not None
            and response.status_code == 402
        ):
            detail = _problem_type(response)
            return await self._advance(
                stored,
                Step.COMPENSATING_RELEASE,
                "declined",
                reason=PAYMENT_DECLINED,
                detail=detail,
            )
        if outcome == Outcome.NOT_SENT:
            # No charge can exist: only the stock goes back.
            return await self._advance(
                stored, Step.COMPENSATING_RELEASE, outcome, reason=PAYMENT_UNAVAILABLE
            )
        reason = INTERRUPTED if outcome == Outcome.REFUSED else PAYMENT_UNAVAILABLE
        return await self._advance(stored, Step.COMPENSATING_REFUND, outcome, reason=reason)

    async def _commit(self, stored: store.Stored) -> bool:
        order = stored.order
        outcome, _ = await self._attempt(
            "commit_inventory",
            order.id,
            self.inventory,
            f"/reservations/{order.id}/commit",
            "/reservations/{order_id}/commit",
        )
        if outcome == Outcome.OK:
            await self._advance(stored, Step.CONFIRMED, Outcome.OK, status="confirmed")
            ORDERS_COMPLETED.labels("confirmed", "").inc()
            ORDER_VALUE.observe(order.total_cents / 100)
            return False  # terminal
        SAGA_STEP_FAILURES.labels("commit_inventory").inc()
        if outcome == Outcome.REFUSED:
            # The reservation is gone (released by someone): the paid order cannot ship.
            return await self._advance(
                stored, Step.COMPENSATING_REFUND, Outcome.REFUSED, reason=INVENTORY_CONFLICT
            )
        return False  # paid: retry the commit later, never refund it

    async def _compensated(
        self, name: str, order_id: UUID, downstream: Downstream, path: str, template: str
    ) -> bool:
        """A compensating call on a budget of its own; True (and counted) once it is done."""
        with _own_budget(COMPENSATION_BUDGET_SECONDS):
            outcome, _ = await self._attempt(
                name, order_id, downstream, path, template, compensation=True
            )
        if outcome != Outcome.OK:
            return False
        SAGA_COMPENSATIONS.labels(name).inc()
        return True

    async def _refund(self, stored: store.Stored) -> bool:
        order = stored.order
        refunded = await self._compensated(
            "refund_payment",
            order.id,
            self.payments,
            f"/charges/{order.id}/refund",
            "/charges/{order_id}/refund",
        )
        if not refunded:
            return False  # try again later; the lease keeps others away meanwhile
        return await self._advance(stored, Step.COMPENSATING_RELEASE, "refunded")

    async def _release(self, stored: store.Stored) -> bool:
        order = stored.order
        released = await self._compensated(
            "release_inventory",
            order.id,
            self.inventory,
            f"/reservations/{order.id}/release",
            "/reservations/{order_id}/release",
        )
        if not released:
            return False
        return await self._cancel(stored, order.reason or INTERRUPTED, "released")

    async def _cancel(self, stored: store.Stored, reason: str, outcome: str) -> bool:
        await self._advance(stored, Step.CANCELLED, outcome, status="cancelled", reason=reason)
        ORDERS_COMPLETED.labels("cancelled", reason).inc()
        return False  # terminal
