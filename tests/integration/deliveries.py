"""Build Stripe-shaped events with unique ids and deliver them to the webhook over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from local_stack.signing import DEFAULT_TOLERANCE_SECONDS, MAX_BODY_BYTES, STALE_MARGIN_SECONDS, signature_header

# Generous because a cold start in AWS or the local stack's first request may read two secrets.
REQUEST_TIMEOUT_SECONDS = 30
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
USER_AGENT = "payment-webhook-integration-tests"


@dataclass
class RunIds:
    """Unique ids for one test run's data, remembered so the run can delete its rows afterwards."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    event_ids: list[str] = field(default_factory=list)
    payment_intent_ids: list[str] = field(default_factory=list)

    def event_id(self) -> str:
        """Record and return a new event id, ``evt_it_<run>_<uuid>``."""
        value = f"evt_it_{self.run}_{uuid.uuid4().hex}"
        self.event_ids.append(value)
        return value

    def payment_intent_id(self) -> str:
        """Record and return a new payment intent id, ``pi_it_<run>_<uuid>``."""
        value = f"pi_it_{self.run}_{uuid.uuid4().hex}"
        self.payment_intent_ids.append(value)
        return value


def provider_event(event_id: str, event_type: str, created: int, data_object: dict[str, Any]) -> dict[str, Any]:
    """Return a test-mode event in Stripe's shape."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def payment_intent(payment_intent_id: str, status: str, *, amount: int = 4999, currency: str = "eur") -> dict[str, Any]:
    """Return a PaymentIntent object with the fields the function stores."""
    return {
        "id": payment_intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "customer": "cus_it_integration",
        "livemode": False,
        "metadata": {"source": "integration-tests"},
        "status": status,
    }


def refunded_charge(payment_intent_id: str, *, amount: int, amount_refunded: int, currency: str = "eur") -> dict[str, Any]:
    """Return a Charge object as a ``charge.refunded`` event carries it."""
    return {
        "id": "ch_it_" + payment_intent_id.removeprefix("pi_it_"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "currency": currency,
        "livemode": False,
        "payment_intent": payment_intent_id,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
    }


def encode(event: dict[str, Any]) -> bytes:
    """Serialise an event as Stripe does (2-space indented JSON)."""
    return json.dumps(event, indent=2).encode("utf-8")


def padded_body(event_id: str, payment_intent_id: str, size: int) -> bytes:
    """Return a valid payment_intent.created body of exactly ``size`` bytes, padded inside ``data.object.metadata``."""
    data_object = payment_intent(payment_intent_id, "requires_payment_method")
    event = provider_event(event_id, "payment_intent.created", int(time.time()), data_object)
    event["data"]["object"]["metadata"]["padding"] = ""
    unpadded = len(encode(event))
    if size < unpadded:
        raise ValueError(f"size {size} is smaller than the unpadded event ({unpadded} bytes)")
    event["data"]["object"]["metadata"]["padding"] = "x" * (size - unpadded)
    return encode(event)


def oversized_body(event_id: str, payment_intent_id: str) -> bytes:
    """Return a valid event body one byte over the function's 1 MiB limit."""
    return padded_body(event_id, payment_intent_id, MAX_BODY_BYTES + 1)


def stale_timestamp(tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> int:
    """Return a signature timestamp a day older than the tolerance allows."""
    return int(time.time()) - tolerance_seconds - STALE_MARGIN_SECONDS


@dataclass(frozen=True)
class WebhookResponse:
    """The webhook's HTTP response: the status and the JSON body (None when the body is not JSON)."""

    status: int
    body: dict[str, Any] | None
    text: str


def deliver(
    url: str,
    body: bytes,
    *,
    secret: str | None,
    timestamp: int | None = None,
    signature: str | None = None,
    content_type: str = JSON_CONTENT_TYPE,
    session: requests.Session | None = None,
) -> WebhookResponse:
    """POST one delivery to the webhook and return its response.

    Parameters
    ----------
    url:
        The WebhookUrl Output.
    body:
        The raw body bytes.
    secret:
        Signing secret; None sends no signature header unless ``signature`` is given.
    timestamp:
        Signature timestamp; defaults to now.
    signature:
        A literal Stripe-Signature value, sent instead of a computed one.
    content_type:
        The Content-Type header.
    session:
        A requests session to reuse connections; a new connection otherwise.

    Returns
    -------
    WebhookResponse
        Status code and parsed body.
    """
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    elif secret is not None:
        headers["Stripe-Signature"] = signature_header(body, secret, timestamp)
    sender = session or requests
    response = sender.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    return WebhookResponse(response.status_code, parsed if isinstance(parsed, dict) else None, response.text)
