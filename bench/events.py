"""Build the inputs the benchmarks feed the handler: signed provider events in API Gateway HTTP API events.

The provider event is a ``payment_intent.succeeded`` in Stripe's event shape: about 0.8 KB
of JSON, smaller than most real ones, which carry more fields. The signature is Stripe's
scheme, ``t=<unix seconds>,v1=<hex>``, where ``v1`` is HMAC-SHA256 of ``"<t>.<raw body>"``
under the signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

WEBHOOK_PATH = "/webhooks/payments"


def payment_event(event_id: str, intent_id: str, created: int, amount: int = 4999) -> dict[str, Any]:
    """Return a ``payment_intent.succeeded`` event in Stripe's event shape."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "type": "payment_intent.succeeded",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{event_id[-14:]}", "idempotency_key": str(uuid.uuid5(uuid.NAMESPACE_URL, event_id))},
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_capturable": 0,
                "amount_received": amount,
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "created": created - 3,
                "currency": "usd",
                "customer": f"cus_{intent_id[-12:]}",
                "description": "Order 1042: two items",
                "latest_charge": f"ch_{intent_id[-20:]}",
                "livemode": False,
                "metadata": {"order_id": "1042", "channel": "web"},
                "payment_method": f"pm_{intent_id[-20:]}",
                "payment_method_types": ["card"],
                "receipt_email": "buyer@example.com",
                "status": "succeeded",
                "statement_descriptor": None,
                "transfer_group": None,
            },
        },
    }


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """Return a ``Stripe-Signature`` header value for ``body`` signed at ``timestamp``."""
    signed_payload = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed_payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def gateway_event(body: bytes, signature: str | None) -> dict[str, Any]:
    """Wrap ``body`` in an API Gateway HTTP API (payload format 2.0) request for the webhook route."""
    now = time.time()
    headers = {
        "content-type": "application/json; charset=utf-8",
        "content-length": str(len(body)),
        "host": "bench.execute-api.us-east-1.amazonaws.com",
        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-proto": "https",
    }
    if signature is not None:
        headers["stripe-signature"] = signature
    request_id = uuid.uuid4().hex[:16]
    return {
        "version": "2.0",
        "routeKey": f"POST {WEBHOOK_PATH}",
        "rawPath": WEBHOOK_PATH,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {
                "method": "POST",
                "path": WEBHOOK_PATH,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": f"POST {WEBHOOK_PATH}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def signed_delivery(event_id: str, secret: str, timestamp: int | None = None) -> dict[str, Any]:
    """Return the API Gateway request that delivers a new, correctly signed event ``event_id``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    intent_id = "pi_" + hashlib.sha256(event_id.encode()).hexdigest()[:24]
    body = json.dumps(payment_event(event_id, intent_id, timestamp), separators=(",", ":")).encode()
    return gateway_event(body, signature_header(body, secret, timestamp))


def forged_delivery(event_id: str, timestamp: int | None = None) -> dict[str, Any]:
    """Return a request for ``event_id`` whose ``v1`` signature was made with the wrong secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return signed_delivery(event_id, "whsec_not_the_configured_secret", timestamp)


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "payment-webhook-dev-bench"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:payment-webhook-dev-bench"
    log_group_name: str = "/aws/lambda/payment-webhook-dev-bench"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        """Return a constant 30 seconds: the benchmarks never run into the function timeout."""
        return 30_000
