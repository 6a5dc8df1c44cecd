"""Workloads for the reliability tests: events with payment lifecycles, and the checks on what was stored.

A workload is a list of provider events with unique ids under one run prefix. Payment
intents go through created, processing and succeeded, then get a partial refund, so the
``payments`` row that the events imply is known in advance whatever order they arrive in.
Other event types (customer.created) have no payment update.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pg8000.native

from tests.integration.deliveries import provider_event

PAYMENT_AMOUNT = 4999
REFUNDED_AMOUNT = 1500
CURRENCY = "eur"
# (event type, payment intent status, seconds after the intent's first event)
PAYMENT_LIFECYCLE = (
    ("payment_intent.created", "requires_payment_method", 0),
    ("payment_intent.processing", "processing", 1),
    ("payment_intent.succeeded", "succeeded", 2),
)
REFUND_OFFSET_SECONDS = 3
EVENTS_PER_PAYMENT = len(PAYMENT_LIFECYCLE) + 1


@dataclass(frozen=True)
class WorkloadEvent:
    """One provider event of a workload and the body bytes a sender signs."""

    event_id: str
    event_type: str
    body: bytes
    payment_intent_id: str | None = None


@dataclass(frozen=True)
class ExpectedPayment:
    """The ``payments`` row that a payment intent's events imply, whatever their order."""

    status: str
    amount: int
    currency: str
    amount_refunded: int


@dataclass
class Workload:
    """Events under one run prefix, and the payment rows they imply."""

    prefix: str
    events: list[WorkloadEvent] = field(default_factory=list)
    payments: dict[str, ExpectedPayment] = field(default_factory=dict)

    @property
    def event_ids(self) -> list[str]:
        return [event.event_id for event in self.events]


def build_workload(event_count: int, *, seed: int, name: str) -> Workload:
    """Return ``event_count`` events in a shuffled order fixed by ``seed``.

    Four of every five events belong to payment intents (three status events and one
    refund each); the rest are ``customer.created`` events.

    Parameters
    ----------
    event_count:
        Number of distinct events.
    seed:
        Seed of the shuffle, so a failing run can be repeated.
    name:
        Short label in the ids (``outage``, ``load``), so rows show which test wrote them.
    """
    prefix = f"evt_rel_{name}_{uuid.uuid4().hex[:8]}_"
    workload = Workload(prefix=prefix)
    created_base = int(time.time()) - 3600
    numbers = iter(range(event_count))
    payment_count = (event_count * 4 // 5) // EVENTS_PER_PAYMENT
    for payment_number in range(payment_count):
        payment_intent_id = f"pi_rel_{name}_{prefix[-9:-1]}_{payment_number:05d}"
        created = created_base + payment_number * 10
        for event_type, status, offset in PAYMENT_LIFECYCLE:
            data_object = {
                "id": payment_intent_id,
                "object": "payment_intent",
                "amount": PAYMENT_AMOUNT,
                "currency": CURRENCY,
                "customer": f"cus_rel_{payment_number:05d}",
                "metadata": {"order": str(payment_number)},
                "status": status,
            }
            workload.events.append(
                _event(f"{prefix}{next(numbers):06d}", event_type, created + offset, data_object, payment_intent_id)
            )
        charge = {
            "id": f"ch_rel_{prefix[-9:-1]}_{payment_number:05d}",
            "object": "charge",
            "amount": PAYMENT_AMOUNT,
            "amount_refunded": REFUNDED_AMOUNT,
            "currency": CURRENCY,
            "payment_intent": payment_intent_id,
            "refunded": False,
            "status": "succeeded",
        }
        workload.events.append(
            _event(
                f"{prefix}{next(numbers):06d}",
                "charge.refunded",
                created + REFUND_OFFSET_SECONDS,
                charge,
                payment_intent_id,
            )
        )
        workload.payments[payment_intent_id] = ExpectedPayment("succeeded", PAYMENT_AMOUNT, CURRENCY, REFUNDED_AMOUNT)
    for number in numbers:
        customer = {"id": f"cus_rel_other_{number:06d}", "object": "customer", "email": None}
        workload.events.append(_event(f"{prefix}{number:06d}", "customer.created", created_base, customer, None))
    random.Random(seed).shuffle(workload.events)
    return workload


def _event(
    event_id: str, event_type: str, created: int, data_object: dict[str, Any], payment_intent_id: str | None
) -> WorkloadEvent:
    body = json.dumps(provider_event(event_id, event_type, created, data_object), indent=2).encode("utf-8")
    return WorkloadEvent(event_id, event_type, body, payment_intent_id)


@dataclass(frozen=True)
class StoredState:
    """What the database holds for a workload, compared with what its events imply."""

    rows_per_event: Counter[str]
    unexpected_event_ids: list[str]
    payment_mismatches: dict[str, str]

    def lost(self, workload: Workload) -> list[str]:
        """Return the workload's event ids that have no row."""
        return [event_id for event_id in workload.event_ids if self.rows_per_event[event_id] == 0]

    def doubled(self) -> list[str]:
        """Return the event ids that have more than one row."""
        return [event_id for event_id, rows in self.rows_per_event.items() if rows > 1]


def read_stored_state(connection: pg8000.native.Connection, workload: Workload) -> StoredState:
    """Read the rows of a workload's events and payment intents and compare them with what the events imply.

    A payment mismatch is a partial write: an event row without its payment update, a
    payment update without its event row, or a payment state no event explains.
    """
    rows = connection.run(
        "SELECT event_id, count(*) FROM webhook_events WHERE starts_with(event_id, :prefix) GROUP BY event_id",
        prefix=workload.prefix,
    )
    rows_per_event: Counter[str] = Counter({str(event_id): int(count) for event_id, count in rows})
    known = set(workload.event_ids)
    unexpected = sorted(event_id for event_id in rows_per_event if event_id not in known)

    payment_rows = connection.run(
        "SELECT p.payment_intent_id, p.status, p.amount, p.currency, p.amount_refunded, p.last_event_id, "
        "e.event_id IS NOT NULL FROM payments p LEFT JOIN webhook_events e ON e.event_id = p.last_event_id "
        "WHERE p.payment_intent_id = ANY(CAST(:ids AS text[]))",
        ids=list(workload.payments),
    )
    by_intent = {str(row[0]): row[1:] for row in payment_rows}
    mismatches: dict[str, str] = {}
    for payment_intent_id, expected in workload.payments.items():
        found = by_intent.get(payment_intent_id)
        if found is None:
            mismatches[payment_intent_id] = "no payments row"
            continue
        status, amount, currency, amount_refunded, last_event_id, last_event_stored = found
        actual = ExpectedPayment(status, amount, currency, amount_refunded)
        if actual != expected:
            mismatches[payment_intent_id] = f"row is {actual}, events imply {expected}"
        elif not last_event_stored:
            mismatches[payment_intent_id] = f"last_event_id {last_event_id} has no webhook_events row"
    return StoredState(rows_per_event, unexpected, mismatches)
