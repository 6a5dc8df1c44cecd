"""The webhook handler end to end: signature, body and event checks against PostgreSQL and moto."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from webhook_test_helpers import (
    FakeLambdaContext,
    SendWebhook,
    WebhookEnvironment,
    http_api_event,
    response_json,
    sign,
    stripe_event,
)

from payment_webhook.handlers.webhook import lambda_handler
from payment_webhook.logic.body import MAX_BODY_BYTES


def assert_rejected(response: dict[str, Any], status: int, error: str) -> None:
    assert response["statusCode"] == status
    assert response_json(response)["error"] == error


@pytest.mark.parametrize(
    "header_name", ["stripe-signature", "STRIPE-SIGNATURE", "Stripe-Signature", "sTrIpE-sIgNaTuRe"]
)
def test_signature_header_any_case(
    header_name: str, send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """The Stripe-Signature header is found in any letter case."""
    event = stripe_event()
    response = send_webhook(event, header_name=header_name)
    assert response["statusCode"] == 200
    assert response_json(response) == {"status": "stored", "event_id": event["id"]}


def test_response_shape(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """Responses have statusCode, a JSON content type and a JSON body."""
    response = send_webhook(stripe_event())
    assert set(response) == {"statusCode", "headers", "body"}
    assert response["headers"] == {"content-type": "application/json"}


def test_signature_header_missing(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A request without Stripe-Signature is missing_signature and stores nothing."""
    response = send_webhook(stripe_event(), headers={})
    assert_rejected(response, 400, "missing_signature")
    assert webhook_env.event_count() == 0


def test_signature_header_malformed(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A header without t is malformed_signature."""
    response = send_webhook(stripe_event(), headers={"Stripe-Signature": "v1=abc"})
    assert_rejected(response, 400, "malformed_signature")


def test_signature_header_only_v0(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A header with only a v0 signature, even a correct one, is malformed_signature."""
    body = json.dumps(stripe_event())
    v0_header = sign(body, webhook_env.signing_secret).replace("v1=", "v0=")
    response = send_webhook(body, headers={"Stripe-Signature": v0_header})
    assert_rejected(response, 400, "malformed_signature")


def test_second_v1_matches(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A header whose second v1 matches is accepted."""
    body = json.dumps(stripe_event())
    timestamp = int(time.time())
    good = sign(body, webhook_env.signing_secret, timestamp).split("v1=")[1]
    header = f"t={timestamp},v1={'0' * 64},v1={good}"
    assert send_webhook(body, headers={"Stripe-Signature": header})["statusCode"] == 200


def test_timestamp_older_than_tolerance(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A correct signature with t older than 300 s is timestamp_outside_tolerance."""
    response = send_webhook(stripe_event(), timestamp=int(time.time()) - 301 - 5)
    assert_rejected(response, 400, "timestamp_outside_tolerance")


def test_timestamp_in_future_accepted(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A correct signature with t an hour ahead is accepted, because only an old t is rejected."""
    event = stripe_event()
    response = send_webhook(event, timestamp=int(time.time()) + 3600)
    assert response_json(response) == {"status": "stored", "event_id": event["id"]}


def test_old_timestamp_with_wrong_secret_is_invalid_signature(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """The signature is checked before the timestamp."""
    response = send_webhook(stripe_event(), secret="whsec_wrong", timestamp=int(time.time()) - 3600)
    assert_rejected(response, 400, "invalid_signature")


def test_wrong_secret(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A signature made with another secret is invalid_signature and stores nothing."""
    response = send_webhook(stripe_event(), secret="whsec_wrong")
    assert_rejected(response, 400, "invalid_signature")
    assert webhook_env.event_count() == 0


def test_base64_body(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A base64-encoded body is decoded before the signature check and stored."""
    event = stripe_event()
    response = send_webhook(event, base64_body=True)
    assert response_json(response) == {"status": "stored", "event_id": event["id"]}


def test_invalid_base64_body(webhook_env: WebhookEnvironment) -> None:
    """isBase64Encoded with text that is not base64 is invalid_event."""
    request = http_api_event("%%%not-base64%%%", headers={"Stripe-Signature": "t=1,v1=00"}, is_base64_encoded=True)
    response = lambda_handler(request, webhook_env.context)
    assert_rejected(response, 400, "invalid_event")


def test_invalid_base64_without_header_is_missing_signature(webhook_env: WebhookEnvironment) -> None:
    """A missing signature header is reported before a body that is not valid base64."""
    response = lambda_handler(http_api_event("!!!!", headers={}, is_base64_encoded=True), webhook_env.context)
    assert_rejected(response, 400, "missing_signature")


def test_invalid_base64_with_malformed_header_is_malformed_signature(webhook_env: WebhookEnvironment) -> None:
    """A malformed signature header is reported before a body that is not valid base64."""
    request = http_api_event("!!!!", headers={"Stripe-Signature": "v1=00"}, is_base64_encoded=True)
    assert_rejected(lambda_handler(request, webhook_env.context), 400, "malformed_signature")


def test_non_ascii_body_signed_as_utf8(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A body with non-ASCII text, not escaped, is verified over its UTF-8 bytes and stored as sent."""
    event = stripe_event("customer.updated", {"id": "cus_1", "name": "Zoë Ångström", "note": "€ 5 — ok ✓"})
    body = json.dumps(event, ensure_ascii=False)
    assert send_webhook(body)["statusCode"] == 200
    stored = webhook_env.query("SELECT payload->'data'->'object'->>'name' FROM webhook_events")
    assert stored == [["Zoë Ångström"]]


def test_non_ascii_body_base64(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """The same non-ASCII body passes when API Gateway base64-encodes it."""
    body = json.dumps(stripe_event("customer.updated", {"id": "cus_1", "name": "Zoë"}), ensure_ascii=False)
    assert send_webhook(body, base64_body=True)["statusCode"] == 200


def test_reserialised_body_fails(webhook_env: WebhookEnvironment) -> None:
    """The signature of the original bytes does not cover the same JSON serialised again."""
    original = json.dumps(stripe_event("customer.updated", {"id": "cus_1", "name": "Zoë"}), ensure_ascii=False)
    header = sign(original, webhook_env.signing_secret)
    reserialised = json.dumps(json.loads(original))
    response = lambda_handler(http_api_event(reserialised, headers={"Stripe-Signature": header}), webhook_env.context)
    assert_rejected(response, 400, "invalid_signature")


def test_same_event_twice_is_duplicate(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """The second delivery of an event returns duplicate and leaves one row."""
    event = stripe_event()
    send_webhook(event)
    response = send_webhook(event)
    assert response_json(response) == {"status": "duplicate", "event_id": event["id"]}
    assert webhook_env.event_count() == 1


def test_same_event_id_other_whitespace_is_duplicate(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """An event id seen before is a duplicate even when the body's bytes differ."""
    event = stripe_event()
    send_webhook(json.dumps(event))
    response = send_webhook(json.dumps(event, indent=4))
    assert response_json(response)["status"] == "duplicate"
    assert webhook_env.event_count() == 1


def test_duplicate_keeps_first_payload(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A duplicate changes nothing, not even the stored payload."""
    event = stripe_event("customer.updated", {"id": "cus_1", "name": "first"})
    send_webhook(event)
    send_webhook({**event, "data": {"object": {"id": "cus_1", "name": "second"}}})
    assert webhook_env.query("SELECT payload->'data'->'object'->>'name' FROM webhook_events") == [["first"]]


def test_unknown_event_type_stored(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An event type the service has no rule for is stored and acknowledged."""
    response = send_webhook(stripe_event("issuing_card.created", {"id": "ic_1"}))
    assert response_json(response)["status"] == "stored"


def test_event_row_columns(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """The event row contains type, created time, livemode and the payload."""
    event = stripe_event("customer.created", created=1_700_000_000, livemode=True)
    send_webhook(event)
    row = webhook_env.query(
        "SELECT event_type, extract(epoch FROM event_created_at)::bigint, livemode, payload->>'id' FROM webhook_events"
    )
    assert row == [["customer.created", 1_700_000_000, True, event["id"]]]


def test_body_over_limit(webhook_env: WebhookEnvironment) -> None:
    """A body over 1 MiB is payload_too_large before any signature check."""
    body = '{"pad": "' + "a" * MAX_BODY_BYTES + '"}'
    response = lambda_handler(http_api_event(body, headers={}), webhook_env.context)
    assert_rejected(response, 413, "payload_too_large")


def test_base64_body_over_limit(webhook_env: WebhookEnvironment) -> None:
    """A base64 body that decodes to more than 1 MiB is payload_too_large."""
    body = base64.b64encode(b"a" * (MAX_BODY_BYTES + 1)).decode()
    response = lambda_handler(http_api_event(body, headers={}, is_base64_encoded=True), webhook_env.context)
    assert_rejected(response, 413, "payload_too_large")


def test_body_not_json(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A signed body that is not JSON is invalid_event."""
    assert_rejected(send_webhook("this is not json"), 400, "invalid_event")


def test_missing_field_named_in_response(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An event without created is invalid_event, and the message names the field."""
    event = stripe_event()
    del event["created"]
    response = send_webhook(event)
    assert response_json(response) == {"error": "invalid_event", "message": "created is missing"}


def test_nul_character_named_in_response(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A NUL character is invalid_event naming the field, and nothing is stored."""
    response = send_webhook(stripe_event("customer.updated", {"id": "cus_1", "customer": "cus_\u0000"}))
    assert response_json(response) == {
        "error": "invalid_event",
        "message": "data.object.customer contains a NUL character",
    }
    assert webhook_env.event_count() == 0


def test_lone_surrogate_rejected(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """An escaped lone surrogate is invalid_event."""
    body = json.dumps(stripe_event("customer.updated", {"id": "cus_1", "name": "x"})).replace('"x"', '"\\udc00"')
    assert_rejected(send_webhook(body), 400, "invalid_event")


def test_deep_nesting_rejected(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A body nested far beyond the recursion limit is invalid_event."""
    body = json.dumps(stripe_event()).replace('"livemode": false', '"deep": ' + "[" * 100_000 + "]" * 100_000)
    assert_rejected(send_webhook(body), 400, "invalid_event")


def test_payment_field_invalid_still_stored(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A payment_intent event with a text amount is stored and acknowledged."""
    data_object = {"id": "pi_1", "status": "succeeded", "amount": "12", "currency": "eur", "customer": None}
    event = stripe_event("payment_intent.succeeded", data_object)
    assert response_json(send_webhook(event)) == {"status": "stored", "event_id": event["id"]}


def test_duplicate_key_named_in_response(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """A duplicate key hiding a NUL character is invalid_event naming the key, and nothing is stored."""
    body = (
        '{"id": "evt_dup", "object": "event", "type": "ping", "created": %d, '
        '"data": {"object": {"x": "\\u0000", "x": "ok"}}}' % int(time.time())
    )
    response = send_webhook(body)
    assert response_json(response) == {"error": "invalid_event", "message": 'data.object has duplicate key "x"'}
    assert webhook_env.event_count() == 0


def test_long_key_cut_in_response_and_log(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """A long key is cut to 40 characters and its card-like digits masked, in the response and the log."""
    key = "jenny.rosen@example.com 4242424242424242 exp 12/34"
    expected = 'data.object.metadata["jenny.rosen@example.com [digits]"...] contains a NUL character'
    response = send_webhook(stripe_event("customer.updated", {"id": "cus_1", "metadata": {key: "x\u0000"}}))
    assert response_json(response)["message"] == expected
    assert captured_logs.messages("webhook rejected")[0]["detail"] == expected
    assert "exp 12/34" not in captured_logs.text()
    assert "4242424242424242" not in captured_logs.text()


def test_two_signing_secrets_both_accepted(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """While a secret is rotated, events signed with the new and with the old secret pass."""
    env = webhook_env.env
    env.secrets_manager.put_secret_value(env.signing_secret_arn, ["whsec_new_secret", env.signing_secret])
    assert send_webhook(stripe_event(), secret="whsec_new_secret")["statusCode"] == 200
    assert send_webhook(stripe_event(), secret=env.signing_secret)["statusCode"] == 200


NOT_500_INPUTS: list[tuple[str, Any]] = [
    ("event is None", None),
    ("event is a list", []),
    ("empty event", {}),
    ("headers is a list", {"headers": ["x"], "body": "{}"}),
    ("header value is a number", {"headers": {"stripe-signature": 5}, "body": "{}"}),
    ("body is a number", {"headers": {"stripe-signature": "t=1,v1=aa"}, "body": 12}),
    ("body is None", http_api_event(None, headers={"stripe-signature": "t=1,v1=aa"})),
    ("lone surrogate body", http_api_event("\ud800", headers={"stripe-signature": "t=1,v1=aa"})),
    ("signature header with non-ASCII", http_api_event("{}", headers={"stripe-signature": "t=1,v1=é"})),
    ("huge t", http_api_event("{}", headers={"stripe-signature": "t=" + "9" * 5000 + ",v1=aa"})),
    ("requestContext is a string", {"requestContext": "x", "body": "{}", "headers": {}}),
]


@pytest.mark.parametrize(("description", "event"), NOT_500_INPUTS, ids=[case[0] for case in NOT_500_INPUTS])
def test_malformed_invocation_never_500(description: str, event: Any, webhook_env: WebhookEnvironment) -> None:
    """Malformed invocation events get a 4xx or 503 response, never a 500 or a trace."""
    response = lambda_handler(event, webhook_env.context)
    assert response["statusCode"] in (400, 413, 503)
    assert "Traceback" not in response["body"]


def test_handler_without_context(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """The handler works when the caller passes no Lambda context."""
    body = json.dumps(stripe_event())
    event = http_api_event(body, headers={"Stripe-Signature": sign(body, webhook_env.signing_secret)})
    assert lambda_handler(event, None)["statusCode"] == 200


def test_rejection_logged_once_with_reason(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """A rejection produces exactly one log line, with its reason and the request id."""
    send_webhook(stripe_event(), secret="whsec_wrong")
    rejected = captured_logs.messages("webhook rejected")
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "invalid_signature"
    assert rejected[0]["correlation_id"] == "api-request-1"


def test_rejection_after_parse_logs_event_id(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """An invalid type is logged with the event id, which is known by then."""
    event = stripe_event("t" * 256)
    send_webhook(event)
    assert captured_logs.messages("webhook rejected")[0]["event_id"] == event["id"]


def test_stored_event_logged_with_ids(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """The stored line carries the request id, the event id and the event type."""
    event = stripe_event()
    send_webhook(event)
    stored = captured_logs.messages("event stored")[0]
    assert stored["correlation_id"] == "api-request-1"
    assert stored["event_id"] == event["id"]
    assert stored["event_type"] == "customer.created"


def test_event_id_not_carried_into_next_invocation(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """Keys of one invocation do not appear on the next invocation's lines."""
    send_webhook(stripe_event())
    send_webhook(stripe_event(), headers={})
    assert "event_id" not in captured_logs.messages("webhook rejected")[0]


def test_logs_contain_no_secret_signature_or_customer_data(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """Log lines never contain the signing secret, a signature, the database password or customer fields."""
    data_object = {
        "id": "pi_logcheck",
        "status": "succeeded",
        "amount": 4200,
        "currency": "eur",
        "customer": "cus_private_customer_id",
        "receipt_email": "person@example.com",
        "payment_method_details": {"card": {"last4": "4242", "fingerprint": "fp_private"}},
    }
    event = stripe_event("payment_intent.succeeded", data_object)
    body = json.dumps(event)
    header = sign(body, webhook_env.signing_secret)
    send_webhook(body, headers={"Stripe-Signature": header})
    send_webhook(body, secret="whsec_wrong")
    send_webhook(body)
    text = captured_logs.text()
    forbidden = [
        webhook_env.signing_secret,
        header.split("v1=")[1],
        webhook_env.env.database.password,
        "cus_private_customer_id",
        "person@example.com",
        "4242",
        "fp_private",
        body,
    ]
    for value in forbidden:
        assert value not in text


def test_rejection_metric_has_reason(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejection emits the WebhookRejected count with the reason as a dimension."""
    capsys.readouterr()
    send_webhook(stripe_event(), secret="whsec_wrong")
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics[-1]["WebhookRejected"] == [1.0]
    assert metrics[-1]["reason"] == "invalid_signature"


def test_stored_metric_emitted(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored event emits the EventStored count."""
    capsys.readouterr()
    send_webhook(stripe_event())
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics[-1]["EventStored"] == [1.0]


def test_short_remaining_time_returns_503(send_webhook: SendWebhook, webhook_env: WebhookEnvironment) -> None:
    """With no time left for network calls the handler returns 503 at once instead of timing out."""
    webhook_env.context = FakeLambdaContext(remaining_millis=100)
    assert_rejected(send_webhook(stripe_event()), 503, "storage_unavailable")
