"""The webhook over HTTP at the WebhookUrl Output: every response of the contract, and concurrent redeliveries.

The same tests run against the local stack and against a deployed stack
(``AWS_SAM_STACK_NAME``). Every event has a unique id, so runs never collide.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import requests

from local_stack.signing import MAX_BODY_BYTES, compute_signature, signature_header
from tests.integration.deliveries import (
    WebhookResponse,
    RunIds,
    deliver,
    encode,
    oversized_body,
    padded_body,
    payment_intent,
    provider_event,
    stale_timestamp,
)

CONCURRENT_SENDERS = 20
CONCURRENT_EVENTS = 20
DELIVERIES_PER_EVENT = 3


def _new_event_body(run_ids: RunIds, status: str = "requires_payment_method") -> tuple[str, bytes]:
    event_id = run_ids.event_id()
    data_object = payment_intent(run_ids.payment_intent_id(), status)
    return event_id, encode(provider_event(event_id, f"payment_intent.{status}", int(time.time()), data_object))


def _assert_rejected(response: WebhookResponse, status: HTTPStatus, error: str) -> None:
    assert response.status == status, response.text
    assert response.body is not None, response.text
    assert response.body.get("error") == error, response.text


# --- Accepted deliveries ----------------------------------------------------------------


def test_new_event_is_stored(webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session) -> None:
    """A correctly signed new event gets 200 stored with its id."""
    event_id, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret=signing_secret, session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "stored", "event_id": event_id}


def test_same_event_again_is_duplicate(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A redelivery of a stored event id gets 200 duplicate."""
    event_id, body = _new_event_body(run_ids)
    deliver(webhook_url, body, secret=signing_secret, session=http)
    response = deliver(webhook_url, body, secret=signing_secret, session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "duplicate", "event_id": event_id}


def test_binary_content_type_is_stored(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A body sent as application/octet-stream, which API Gateway base64-encodes, verifies on its raw bytes."""
    event_id, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret=signing_secret, content_type="application/octet-stream", session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "stored", "event_id": event_id}


def test_signature_header_name_in_any_case(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """The signature header is found whatever the letter case of its name."""
    event_id, body = _new_event_body(run_ids)
    http_response = http.post(
        webhook_url,
        data=body,
        headers={"Content-Type": "application/json", "STRIPE-SIGNATURE": signature_header(body, signing_secret)},
        timeout=30,
    )
    assert http_response.status_code == HTTPStatus.OK, http_response.text
    assert http_response.json() == {"status": "stored", "event_id": event_id}


def test_any_matching_v1_is_accepted(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A header with several v1 values passes when one of them matches, as during a secret rotation."""
    event_id, body = _new_event_body(run_ids)
    timestamp = int(time.time())
    unknown = compute_signature(body, "whsec_notTheStackSecret000000000001", timestamp)
    known = compute_signature(body, signing_secret, timestamp)
    response = deliver(webhook_url, body, secret=None, signature=f"t={timestamp},v1={unknown},v1={known}", session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "stored", "event_id": event_id}


def test_body_at_size_limit_is_stored(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A body of exactly 1 MiB is accepted."""
    event_id = run_ids.event_id()
    body = padded_body(event_id, run_ids.payment_intent_id(), MAX_BODY_BYTES)
    response = deliver(webhook_url, body, secret=signing_secret, session=http)
    assert response.status == HTTPStatus.OK, response.text
    assert response.body == {"status": "stored", "event_id": event_id}


# --- Rejections -------------------------------------------------------------------------


def test_missing_signature_is_rejected(webhook_url: str, run_ids: RunIds, http: requests.Session) -> None:
    """A delivery without a Stripe-Signature header gets 400 missing_signature."""
    _, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret=None, session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "missing_signature")


def test_malformed_signature_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A header whose t is not an integer gets 400 malformed_signature."""
    _, body = _new_event_body(run_ids)
    v1 = compute_signature(body, signing_secret, int(time.time()))
    response = deliver(webhook_url, body, secret=None, signature=f"t=not-a-timestamp,v1={v1}", session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "malformed_signature")


def test_header_without_v1_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A header with a timestamp but no v1 signature gets 400 malformed_signature."""
    _, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret=None, signature=f"t={int(time.time())}", session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "malformed_signature")


def test_wrong_secret_is_rejected(webhook_url: str, run_ids: RunIds, http: requests.Session) -> None:
    """A signature made with another secret gets 400 invalid_signature."""
    _, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret="whsec_notTheStackSecret000000000001", session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "invalid_signature")


def test_changed_body_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A body changed after signing gets 400 invalid_signature."""
    _, body = _new_event_body(run_ids)
    header = signature_header(body, signing_secret)
    response = deliver(webhook_url, body.replace(b"4999", b"9999"), secret=None, signature=header, session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "invalid_signature")


def test_stale_timestamp_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A correct signature a day older than the tolerance gets 400 timestamp_outside_tolerance."""
    _, body = _new_event_body(run_ids)
    response = deliver(webhook_url, body, secret=signing_secret, timestamp=stale_timestamp(), session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "timestamp_outside_tolerance")


def test_body_not_json_is_rejected(webhook_url: str, signing_secret: str, http: requests.Session) -> None:
    """A correctly signed body that is not JSON gets 400 invalid_event with a message."""
    response = deliver(webhook_url, b'{"id": "evt_it_truncated", "object": "ev', secret=signing_secret, session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "invalid_event")
    assert response.body is not None and response.body.get("message"), response.text


def test_event_without_data_object_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A correctly signed event without data.object gets 400 invalid_event naming the field."""
    event = provider_event(run_ids.event_id(), "payment_intent.created", int(time.time()), {})
    del event["data"]["object"]
    response = deliver(webhook_url, encode(event), secret=signing_secret, session=http)
    _assert_rejected(response, HTTPStatus.BAD_REQUEST, "invalid_event")
    assert response.body is not None and "data.object" in str(response.body.get("message")), response.text


def test_body_over_size_limit_is_rejected(
    webhook_url: str, signing_secret: str, run_ids: RunIds, http: requests.Session
) -> None:
    """A correctly signed body one byte over 1 MiB gets 413 payload_too_large."""
    body = oversized_body(run_ids.event_id(), run_ids.payment_intent_id())
    response = deliver(webhook_url, body, secret=signing_secret, session=http)
    _assert_rejected(response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large")


# --- Concurrent redeliveries ------------------------------------------------------------


def test_concurrent_redeliveries_store_each_event_once(webhook_url: str, signing_secret: str, run_ids: RunIds) -> None:
    """20 senders deliver each of 20 events 3 times in shuffled order: one stored per event, the rest duplicate."""
    bodies = dict(_new_event_body(run_ids) for _ in range(CONCURRENT_EVENTS))
    deliveries = [event_id for event_id in bodies for _ in range(DELIVERIES_PER_EVENT)]
    random.shuffle(deliveries)
    # requests.Session is not thread-safe, so each sender thread keeps its own.
    thread_state = threading.local()
    opened_sessions: list[requests.Session] = []

    def send(event_id: str) -> tuple[str, WebhookResponse]:
        if not hasattr(thread_state, "http"):
            thread_state.http = requests.Session()
            opened_sessions.append(thread_state.http)
        return event_id, deliver(webhook_url, bodies[event_id], secret=signing_secret, session=thread_state.http)

    try:
        with ThreadPoolExecutor(max_workers=CONCURRENT_SENDERS) as pool:
            results = list(pool.map(send, deliveries))
    finally:
        for session in opened_sessions:
            session.close()

    server_errors = [response.text for _, response in results if response.status >= HTTPStatus.INTERNAL_SERVER_ERROR]
    unexpected = [
        (event_id, response.status, response.text)
        for event_id, response in results
        if response.status != HTTPStatus.OK or response.body is None or response.body.get("event_id") != event_id
    ]
    stored = Counter(event_id for event_id, response in results if response.body and response.body.get("status") == "stored")
    duplicates = Counter(
        event_id for event_id, response in results if response.body and response.body.get("status") == "duplicate"
    )
    assert server_errors == []
    assert unexpected == []
    assert stored == Counter(dict.fromkeys(bodies, 1))
    assert duplicates == Counter(dict.fromkeys(bodies, DELIVERIES_PER_EVENT - 1))
