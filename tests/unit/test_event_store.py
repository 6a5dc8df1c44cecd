"""Storing events and payment updates: duplicates, concurrency, ordering and refunds."""

from __future__ import annotations

import json
import threading
from typing import Any

from webhook_test_helpers import (
    SendWebhook,
    WebhookEnvironment,
    payment_intent_event,
    response_json,
    stripe_event,
    to_body,
)

from payment_webhook.config import load_database_settings, load_secrets_manager_settings
from payment_webhook.dal.connection import ConnectionManager
from payment_webhook.dal.events import EventStore
from payment_webhook.dal.secrets import DatabaseCredentialsCache
from payment_webhook.dal.secrets_client import SecretsManagerClient
from payment_webhook.deadline import Deadline
from payment_webhook.logic import jsonb
from payment_webhook.logic.events import parse_event
from payment_webhook.models.outcome import StoreOutcome

CREATED = 1_700_000_000


def new_store() -> tuple[EventStore, ConnectionManager]:
    """Return an event store with its own connection manager, configured from the environment."""
    settings = load_database_settings()
    client = SecretsManagerClient(load_secrets_manager_settings())
    connections = ConnectionManager(settings, DatabaseCredentialsCache(client, settings.secret_arn))
    return EventStore(connections), connections


def store_concurrently(events: list[dict[str, Any]]) -> list[StoreOutcome]:
    """Store each event from its own thread and connection, released together by a barrier."""
    stores = [new_store() for _ in events]
    for _, connections in stores:
        # Connect before the barrier so the statements, not the connects, race.
        connections.run("SELECT 1", Deadline.after(10))
    barrier = threading.Barrier(len(events))
    outcomes: list[StoreOutcome | BaseException] = [StoreOutcome.STORED] * len(events)

    def worker(index: int) -> None:
        store, _ = stores[index]
        try:
            parsed = parse_event(to_body(events[index]).encode())
            barrier.wait(timeout=10)
            outcomes[index] = store.store(parsed, Deadline.after(10)).outcome
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[index] = exc

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for _, connections in stores:
        connections.close()
    for outcome in outcomes:
        assert isinstance(outcome, StoreOutcome), f"worker failed: {outcome!r}"
    return outcomes  # type: ignore[return-value]


def test_concurrent_deliveries_store_one_row(webhook_env: WebhookEnvironment) -> None:
    """Two simultaneous deliveries of one event on separate connections store one row."""
    event = payment_intent_event("pi_race", "succeeded", created=CREATED)
    outcomes = store_concurrently([event, event])
    assert sorted(outcome.value for outcome in outcomes) == ["duplicate", "stored"]
    assert webhook_env.event_count() == 1


def test_concurrent_payment_events_keep_newest(webhook_env: WebhookEnvironment) -> None:
    """Simultaneous events of one payment intent leave the newest status, whichever commits last."""
    older = payment_intent_event("pi_concurrent", "processing", created=CREATED)
    newer = payment_intent_event("pi_concurrent", "succeeded", created=CREATED + 5)
    store_concurrently([newer, older])
    assert webhook_env.payment("pi_concurrent")["status"] == "succeeded"


def test_payment_row_created(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A payment_intent event creates the payments row with its fields."""
    event = payment_intent_event("pi_new", "requires_payment_method", created=CREATED, amount=1234, customer="cus_9")
    send_webhook(event, timestamp=None)
    assert webhook_env.payment("pi_new") == {
        "status": "requires_payment_method",
        "status_rank": 1,
        "amount": 1234,
        "currency": "eur",
        "customer": "cus_9",
        "amount_refunded": 0,
        "last_event_id": event["id"],
    }


def test_out_of_order_events_keep_newest(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An older event arriving after a newer one does not overwrite it."""
    send_webhook(payment_intent_event("pi_order", "succeeded", created=CREATED + 10))
    response = send_webhook(payment_intent_event("pi_order", "processing", created=CREATED))
    assert response_json(response)["status"] == "stored"
    assert webhook_env.payment("pi_order")["status"] == "succeeded"


def test_newer_event_applies(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A newer event moves the payment forward, even to a lower-ranked status."""
    send_webhook(payment_intent_event("pi_retry", "processing", created=CREATED))
    send_webhook(payment_intent_event("pi_retry", "requires_payment_method", created=CREATED + 1))
    assert webhook_env.payment("pi_retry")["status"] == "requires_payment_method"


def test_same_second_later_status_wins(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """Within one created second, succeeded beats processing in either arrival order."""
    send_webhook(payment_intent_event("pi_a", "succeeded", created=CREATED))
    send_webhook(payment_intent_event("pi_a", "processing", created=CREATED))
    send_webhook(payment_intent_event("pi_b", "processing", created=CREATED))
    send_webhook(payment_intent_event("pi_b", "succeeded", created=CREATED))
    assert webhook_env.payment("pi_a")["status"] == "succeeded"
    assert webhook_env.payment("pi_b")["status"] == "succeeded"


def test_same_second_same_rank_keeps_first(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """Between the two final states in one second, the first one stored stays."""
    first = payment_intent_event("pi_final", "canceled", created=CREATED)
    send_webhook(first)
    send_webhook(payment_intent_event("pi_final", "succeeded", created=CREATED))
    assert webhook_env.payment("pi_final")["last_event_id"] == first["id"]


def test_duplicate_event_does_not_reapply_payment(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A redelivered older event stays a duplicate and cannot move the payment back."""
    old = payment_intent_event("pi_dup", "processing", created=CREATED)
    send_webhook(old)
    send_webhook(payment_intent_event("pi_dup", "succeeded", created=CREATED + 1))
    send_webhook(old)
    assert webhook_env.payment("pi_dup")["status"] == "succeeded"


def test_charge_refunded_updates_amount(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """charge.refunded sets the payment's refunded amount."""
    send_webhook(payment_intent_event("pi_refund", "succeeded", created=CREATED))
    send_webhook(stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_refund", "amount_refunded": 700}))
    payment = webhook_env.payment("pi_refund")
    assert payment["amount_refunded"] == 700
    assert payment["status"] == "succeeded"


def test_refund_amount_never_decreases(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A refund event with a smaller total, arriving late, leaves the larger total."""
    send_webhook(stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_r2", "amount_refunded": 900}))
    send_webhook(stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_r2", "amount_refunded": 300}))
    assert webhook_env.payment("pi_r2")["amount_refunded"] == 900


def test_refund_before_payment_event_creates_row(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A refund that arrives first creates the row, and the payment event fills in the status later."""
    send_webhook(stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_early", "amount_refunded": 100}))
    assert webhook_env.payment("pi_early")["status"] is None
    send_webhook(payment_intent_event("pi_early", "succeeded", created=CREATED))
    payment = webhook_env.payment("pi_early")
    assert payment["status"] == "succeeded"
    assert payment["amount_refunded"] == 100


def test_refund_without_payment_intent_stores_event_only(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """A refunded charge with no payment intent stores the event and no payments row."""
    send_webhook(stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": None, "amount_refunded": 100}))
    assert webhook_env.event_count() == 1
    assert webhook_env.query("SELECT count(*) FROM payments")[0][0] == 0


def test_unknown_status_skips_payment_update(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An event with a status the rank table does not know is stored, and the payments row is left alone."""
    send_webhook(payment_intent_event("pi_unknown", "processing", created=CREATED))
    response = send_webhook(payment_intent_event("pi_unknown", "requires_reauthorization", created=CREATED + 1))
    assert response_json(response)["status"] == "stored"
    assert webhook_env.payment("pi_unknown")["status"] == "processing"


def test_unusable_amount_stored_and_payment_skipped(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any, capsys: Any
) -> None:
    """A negative amount stores the event, leaves payments unchanged, and logs one warning naming the field."""
    send_webhook(payment_intent_event("pi_skip", "processing", created=CREATED))
    before = webhook_env.payment("pi_skip")
    event = payment_intent_event("pi_skip", "succeeded", created=CREATED + 1, amount=-4242)
    capsys.readouterr()
    response = send_webhook(event)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    skipped = captured_logs.messages("payment update skipped")
    assert response_json(response) == {"status": "stored", "event_id": event["id"]}
    assert webhook_env.query("SELECT count(*) FROM webhook_events WHERE event_id = :id", id=event["id"]) == [[1]]
    assert webhook_env.payment("pi_skip") == before
    assert len(skipped) == 1
    assert skipped[0]["field"] == "data.object.amount"
    assert skipped[0]["level"] == "WARNING"
    assert "4242" not in captured_logs.text()
    assert metrics[-1]["PaymentUpdateSkipped"] == [1.0]


def test_skipped_payment_update_not_logged_for_duplicate(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """A duplicate of an event whose payment update was skipped logs no second warning."""
    event = payment_intent_event("pi_skip_dup", "succeeded", created=CREATED, amount=-1)
    send_webhook(event)
    send_webhook(event)
    assert len(captured_logs.messages("payment update skipped")) == 1


def test_refund_with_unusable_amount_stored_without_payment(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """charge.refunded with a text amount_refunded is stored and creates no payments row."""
    event = stripe_event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_text", "amount_refunded": "5"})
    assert response_json(send_webhook(event))["status"] == "stored"
    assert webhook_env.payment("pi_text") is None


def test_expanded_customer_stored_as_id(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An expanded customer object stores the customer's id."""
    event = payment_intent_event("pi_expanded", "succeeded", created=CREATED)
    event["data"]["object"]["customer"] = {"id": "cus_expanded", "object": "customer", "email": "a@example.com"}
    send_webhook(event)
    assert webhook_env.payment("pi_expanded")["customer"] == "cus_expanded"


def test_postgresql_data_exception_is_invalid_event(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, monkeypatch: Any
) -> None:
    """A payload PostgreSQL rejects with a data exception gets 400 naming the SQLSTATE, and nothing is stored."""
    # With the text pre-check off, a NUL escape reaches PostgreSQL, which rejects it with 22P05.
    monkeypatch.setattr(jsonb, "_may_be_unstorable", lambda text: False)
    event = stripe_event("customer.updated", {"id": "cus_1", "name": "a\u0000b"})
    response = send_webhook(event)
    assert response["statusCode"] == 400
    assert response_json(response) == {
        "error": "invalid_event",
        "message": "payload cannot be stored by PostgreSQL (SQLSTATE 22P05)",
    }
    assert webhook_env.event_count() == 0


def test_store_works_after_data_exception(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, monkeypatch: Any
) -> None:
    """The connection stays usable after PostgreSQL rejected a payload."""
    monkeypatch.setattr(jsonb, "_may_be_unstorable", lambda text: False)
    send_webhook(stripe_event("customer.updated", {"id": "cus_1", "name": "a\u0000b"}))
    assert response_json(send_webhook(stripe_event()))["status"] == "stored"


def test_large_numbers_stored(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """Amounts up to the bigint maximum and numbers beyond float range are stored."""
    event = payment_intent_event("pi_big", "succeeded", created=CREATED, amount=2**63 - 1)
    body = to_body(event).replace('"livemode": false', '"livemode": false, "ratio": 1e400')
    assert response_json(send_webhook(body))["status"] == "stored"
    assert webhook_env.payment("pi_big")["amount"] == 2**63 - 1


def test_store_statement_single_round_trip(webhook_env: WebhookEnvironment, monkeypatch: Any) -> None:
    """On a kept connection, storing an event sends one message batch (one round trip)."""
    import pg8000.core

    store, connections = new_store()
    try:
        store.store(
            parse_event(to_body(payment_intent_event("pi_rt", "processing", created=CREATED)).encode()),
            Deadline.after(10),
        )
        flushes: list[object] = []
        original_flush = pg8000.core._flush

        def counting_flush(sock: object) -> None:
            flushes.append(sock)
            original_flush(sock)

        # pg8000 flushes its socket once per message batch and then waits for the server's reply.
        monkeypatch.setattr(pg8000.core, "_flush", counting_flush)
        event = parse_event(to_body(payment_intent_event("pi_rt", "succeeded", created=CREATED + 1)).encode())
        store.store(event, Deadline.after(10))
        assert len(flushes) == 1
    finally:
        connections.close()
