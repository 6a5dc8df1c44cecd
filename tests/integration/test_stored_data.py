"""What the webhook stores, read from the local stack's database with the DbMasterSecretArn credentials.

A deployed stack's database is private, so these tests run against the local stack only.
Against AWS, the stored and duplicate responses in test_webhook_http.py show what was stored.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import pg8000.native
import requests

from tests.integration.deliveries import (
    RunIds,
    deliver,
    encode,
    payment_intent,
    provider_event,
    refunded_charge,
)
from tests.integration.outputs import local_only

pytestmark = local_only

ConnectDatabase = Callable[[], pg8000.native.Connection]
PAYMENT_AMOUNT = 4999
REFUNDED_AMOUNT = 1500
CONCURRENT_SENDERS = 20
CONCURRENT_EVENTS = 10
DELIVERIES_PER_EVENT = 3


def _query(connect_database: ConnectDatabase, sql: str, **parameters: Any) -> list[list[Any]]:
    connection = connect_database()
    try:
        return connection.run(sql, **parameters)
    finally:
        connection.close()


def _payment(connect_database: ConnectDatabase, payment_intent_id: str) -> dict[str, Any] | None:
    rows = _query(
        connect_database,
        "SELECT status, amount, currency, amount_refunded FROM payments WHERE payment_intent_id = :id",
        id=payment_intent_id,
    )
    if not rows:
        return None
    return dict(zip(("status", "amount", "currency", "amount_refunded"), rows[0], strict=True))


def _send_stored(
    webhook_url: str, signing_secret: str, event: dict[str, Any], http: requests.Session
) -> None:
    response = deliver(webhook_url, encode(event), secret=signing_secret, session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "stored", "event_id": event["id"]}, response.text


def test_concurrent_redeliveries_leave_one_row_per_event(
    webhook_url: str, signing_secret: str, run_ids: RunIds, connect_database: ConnectDatabase
) -> None:
    """Each event delivered 3 times by concurrent senders has exactly one webhook_events row."""
    now = int(time.time())
    events = [
        provider_event(
            run_ids.event_id(), "payment_intent.created", now, payment_intent(run_ids.payment_intent_id(), "requires_payment_method")
        )
        for _ in range(CONCURRENT_EVENTS)
    ]
    deliveries = [event for event in events for _ in range(DELIVERIES_PER_EVENT)]
    random.shuffle(deliveries)

    def send(event: dict[str, Any]) -> int:
        return deliver(webhook_url, encode(event), secret=signing_secret).status

    with ThreadPoolExecutor(max_workers=CONCURRENT_SENDERS) as pool:
        statuses = list(pool.map(send, deliveries))

    event_ids = [event["id"] for event in events]
    rows = _query(
        connect_database,
        "SELECT event_id, count(*) FROM webhook_events WHERE event_id = ANY(:ids) GROUP BY event_id",
        ids=event_ids,
    )
    assert set(statuses) == {HTTPStatus.OK}
    assert dict((event_id, count) for event_id, count in rows) == dict.fromkeys(event_ids, 1)


def test_stored_row_keeps_event_fields(
    webhook_url: str, signing_secret: str, run_ids: RunIds, connect_database: ConnectDatabase, http: requests.Session
) -> None:
    """The stored row has the event's type, created time, livemode and payload."""
    created = int(time.time()) - 60
    event = provider_event(
        run_ids.event_id(), "payment_intent.created", created, payment_intent(run_ids.payment_intent_id(), "requires_payment_method")
    )
    _send_stored(webhook_url, signing_secret, event, http)
    rows = _query(
        connect_database,
        "SELECT event_type, CAST(extract(epoch FROM event_created_at) AS bigint), livemode, payload ->> 'id' "
        "FROM webhook_events WHERE event_id = :id",
        id=event["id"],
    )
    assert rows == [["payment_intent.created", created, False, event["id"]]]


def test_out_of_order_event_keeps_newer_status(
    webhook_url: str, signing_secret: str, run_ids: RunIds, connect_database: ConnectDatabase, http: requests.Session
) -> None:
    """processing created at T-10, delivered after succeeded created at T, leaves the payment succeeded."""
    payment_intent_id = run_ids.payment_intent_id()
    succeeded_at = int(time.time()) - 30
    for status, created in (("requires_payment_method", succeeded_at - 40), ("succeeded", succeeded_at), ("processing", succeeded_at - 10)):
        event = provider_event(
            run_ids.event_id(), f"payment_intent.{status}", created, payment_intent(payment_intent_id, status, amount=PAYMENT_AMOUNT)
        )
        _send_stored(webhook_url, signing_secret, event, http)
    assert _payment(connect_database, payment_intent_id) == {
        "status": "succeeded",
        "amount": PAYMENT_AMOUNT,
        "currency": "eur",
        "amount_refunded": 0,
    }


def test_refund_sets_amount_refunded(
    webhook_url: str, signing_secret: str, run_ids: RunIds, connect_database: ConnectDatabase, http: requests.Session
) -> None:
    """charge.refunded records the refunded amount and leaves the payment succeeded."""
    payment_intent_id = run_ids.payment_intent_id()
    succeeded_at = int(time.time()) - 120
    succeeded = provider_event(
        run_ids.event_id(), "payment_intent.succeeded", succeeded_at, payment_intent(payment_intent_id, "succeeded", amount=PAYMENT_AMOUNT)
    )
    refunded = provider_event(
        run_ids.event_id(),
        "charge.refunded",
        succeeded_at + 60,
        refunded_charge(payment_intent_id, amount=PAYMENT_AMOUNT, amount_refunded=REFUNDED_AMOUNT),
    )
    _send_stored(webhook_url, signing_secret, succeeded, http)
    _send_stored(webhook_url, signing_secret, refunded, http)
    assert _payment(connect_database, payment_intent_id) == {
        "status": "succeeded",
        "amount": PAYMENT_AMOUNT,
        "currency": "eur",
        "amount_refunded": REFUNDED_AMOUNT,
    }


def test_rejected_delivery_stores_nothing(
    webhook_url: str, run_ids: RunIds, connect_database: ConnectDatabase, http: requests.Session
) -> None:
    """An event signed with the wrong secret leaves no event row and no payment row."""
    payment_intent_id = run_ids.payment_intent_id()
    event = provider_event(
        run_ids.event_id(), "payment_intent.succeeded", int(time.time()), payment_intent(payment_intent_id, "succeeded")
    )
    response = deliver(webhook_url, encode(event), secret="whsec_notTheStackSecret000000000001", session=http)
    event_rows = _query(connect_database, "SELECT count(*) FROM webhook_events WHERE event_id = :id", id=event["id"])
    assert response.status == HTTPStatus.BAD_REQUEST, response.text
    assert event_rows == [[0]]
    assert _payment(connect_database, payment_intent_id) is None
