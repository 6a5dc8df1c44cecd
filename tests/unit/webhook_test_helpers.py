"""Builders shared by the unit tests: Lambda context, HTTP API events, provider events, signatures."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pg8000.native
import stripe

_event_numbers = itertools.count(1)


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that the handlers read."""

    remaining_millis: int = 10_000
    function_name: str = "payment-webhook-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:payment-webhook-test"
    aws_request_id: str = "function-request-1"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


def http_api_event(
    body: str | None,
    *,
    headers: dict[str, str] | None = None,
    is_base64_encoded: bool = False,
    request_id: str = "api-request-1",
) -> dict[str, Any]:
    """Return an API Gateway HTTP API payload 2.0 event for POST /webhooks/payments."""
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/payments",
        "rawPath": "/webhooks/payments",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "requestId": request_id,
            "http": {"method": "POST", "path": "/webhooks/payments", "sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    }


def stripe_event(
    event_type: str = "customer.created",
    data_object: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    created: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Return a provider event in Stripe's shape with a fresh id unless one is given."""
    return {
        "id": event_id or f"evt_test_{next(_event_numbers):06d}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "data": {"object": data_object if data_object is not None else {"id": "cus_test", "object": "customer"}},
        **fields,
    }


def payment_intent_event(
    payment_intent_id: str,
    status: str,
    *,
    created: int,
    amount: int = 2000,
    customer: str | None = "cus_test",
    event_type: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Return a ``payment_intent.*`` event whose data.object has the given status."""
    return stripe_event(
        event_type or f"payment_intent.{status}",
        {
            "id": payment_intent_id,
            "object": "payment_intent",
            "status": status,
            "amount": amount,
            "currency": "eur",
            "customer": customer,
        },
        event_id=event_id,
        created=created,
    )


def sign(body: str, secret: str, timestamp: int | None = None) -> str:
    """Return a Stripe-Signature header for ``body`` made by the stripe library's own signer."""
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


def to_body(payload: dict[str, Any] | str) -> str:
    """Return ``payload`` as the JSON text a provider would send."""
    return payload if isinstance(payload, str) else json.dumps(payload)


def response_json(response: dict[str, Any]) -> dict[str, Any]:
    """Return the decoded JSON body of a handler response."""
    return json.loads(response["body"])


SendWebhook = Callable[..., dict[str, Any]]


@dataclass
class WebhookEnvironment:
    """A migrated database, both secrets in moto, and the function's variables set."""

    env: Any
    connection: pg8000.native.Connection
    context: FakeLambdaContext = field(default_factory=FakeLambdaContext)

    @property
    def signing_secret(self) -> str:
        return str(self.env.signing_secret)

    def query(self, sql: str, **parameters: Any) -> list[list[Any]]:
        """Run ``sql`` as the database owner and return its rows."""
        return self.connection.run(sql, **parameters)

    def event_count(self) -> int:
        return int(self.query("SELECT count(*) FROM webhook_events")[0][0])

    def payment(self, payment_intent_id: str) -> dict[str, Any] | None:
        """Return the payments row as a dict, or None."""
        rows = self.query(
            "SELECT status, status_rank, amount, currency, customer, amount_refunded, last_event_id "
            "FROM payments WHERE payment_intent_id = :id",
            id=payment_intent_id,
        )
        if not rows:
            return None
        columns = ("status", "status_rank", "amount", "currency", "customer", "amount_refunded", "last_event_id")
        return dict(zip(columns, rows[0], strict=True))


def open_owner_connection(database: Any) -> pg8000.native.Connection:
    """Open a connection as the database's owner role."""
    return pg8000.native.Connection(
        user=database.username,
        password=database.password,
        host=database.host,
        port=database.port,
        database=database.name,
        timeout=10,
    )
