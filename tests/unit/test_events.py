"""Parsing and validation of verified bodies into WebhookEvent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from payment_webhook.errors import InvalidEvent
from payment_webhook.logic.events import MAX_CREATED, parse_event
from payment_webhook.logic.jsonb import MAX_NESTING_DEPTH
from payment_webhook.models.event import PaymentIntentUpdate, RefundUpdate, SkippedPaymentUpdate


def event_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "evt_1",
        "object": "event",
        "type": "customer.created",
        "created": 1_700_000_000,
        "livemode": False,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    document.update(overrides)
    return document


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def invalid_event_message(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.message


def test_valid_event_parsed() -> None:
    """A minimal valid event yields its id, type, created and livemode."""
    event = parse_event(encode(event_document()))
    assert event.event_id == "evt_1"
    assert event.event_type == "customer.created"
    assert event.created == 1700000000
    assert event.livemode is False


def test_payload_text_kept_verbatim() -> None:
    """The stored text is the body as received, whitespace included."""
    raw = b'{"id": "evt_1",   "type": "x", "created": 1, "data": {"object": {}}}'
    assert parse_event(raw).payload_text == raw.decode()


def test_unknown_event_type_valid_without_payment_update() -> None:
    """An event type the service does not know is valid and implies no payment update."""
    assert parse_event(encode(event_document(type="some.future_event"))).payment_update is None


def test_livemode_optional() -> None:
    """An event without livemode is valid."""
    document = event_document()
    del document["livemode"]
    assert parse_event(encode(document)).livemode is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"\xff\xfe", "body is not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "body is not valid JSON"),
    ],
)
def test_body_not_json_object(raw: bytes, expected: str) -> None:
    """Bodies that are not a UTF-8 JSON object are rejected with a message saying so."""
    assert expected in invalid_event_message(raw)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"id": None}, "id must be a string"),
        ({"id": ""}, "id must be 1 to 255 characters long"),
        ({"id": "e" * 256}, "id must be 1 to 255 characters long"),
        ({"id": 12}, "id must be a string"),
        ({"type": ""}, "type must be 1 to 255 characters long"),
        ({"type": "t" * 256}, "type must be 1 to 255 characters long"),
        ({"type": ["a"]}, "type must be a string"),
        ({"created": True}, "created must be an integer"),
        ({"created": 1.5}, "created must be an integer"),
        ({"created": "1700000000"}, "created must be an integer"),
        ({"created": -1}, "created must be between 0 and 253402300799"),
        ({"created": MAX_CREATED + 1}, "created must be between 0 and 253402300799"),
        ({"livemode": "false"}, "livemode must be true or false"),
        ({"livemode": None}, "livemode must be true or false"),
        ({"data": []}, "data must be an object"),
        ({"data": {}}, "data.object is missing"),
        ({"data": {"object": "cus_1"}}, "data.object must be an object"),
    ],
)
def test_invalid_field_named(overrides: dict[str, Any], expected: str) -> None:
    """Each invalid top-level field is rejected with a message naming it."""
    assert invalid_event_message(encode(event_document(**overrides))) == expected


@pytest.mark.parametrize("field", ["id", "type", "created", "data"])
def test_missing_field_named(field: str) -> None:
    """Each missing required field is rejected with a message naming it."""
    document = event_document()
    del document[field]
    assert invalid_event_message(encode(document)) == f"{field} is missing"


def test_created_bounds_accepted() -> None:
    """created 0 and the last second of year 9999 are valid."""
    assert parse_event(encode(event_document(created=MAX_CREATED))).created == MAX_CREATED


def test_nul_character_names_field() -> None:
    """A NUL character in a nested string names its path."""
    raw = encode(event_document(data={"object": {"customer": "cus_\u0000x"}}))
    assert invalid_event_message(raw) == "data.object.customer contains a NUL character"


def test_nul_character_in_key_named() -> None:
    """A NUL character in a key names the object that contains the key."""
    raw = encode(event_document(data={"object": {"meta\u0000": "x"}}))
    assert invalid_event_message(raw) == "a key in data.object contains a NUL character"


def test_nul_character_in_array_item_named() -> None:
    """A NUL character inside an array names the index."""
    raw = encode(event_document(data={"object": {"lines": ["ok", "bad\u0000"]}}))
    assert invalid_event_message(raw) == "data.object.lines[1] contains a NUL character"


def test_lone_surrogate_names_field() -> None:
    """An escaped lone surrogate is rejected, naming the field."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"name": "\\ud800"}}}'
    assert invalid_event_message(raw) == "data.object.name contains a lone UTF-16 surrogate"


def test_surrogate_pair_accepted() -> None:
    """An escaped surrogate pair is one valid character."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"name": "\\ud83d\\ude00"}}}'
    assert parse_event(raw).event_id == "evt_1"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_names_field(literal: str) -> None:
    """NaN and Infinity literals are rejected, naming the field."""
    raw = f'{{"id": "evt_1", "type": "x", "created": 1, "data": {{"object": {{"amount": {literal}}}}}}}'.encode()
    assert invalid_event_message(raw) == f"data.object.amount is {literal}, which is not a finite number"


@pytest.mark.parametrize("literal", ["1e131072", "1e-16384", "0." + "0" * 16383 + "1"])
def test_number_outside_numeric_range_named(literal: str) -> None:
    """Numbers that PostgreSQL's numeric type cannot hold are rejected, naming the field."""
    raw = f'{{"id": "evt_1", "type": "x", "created": 1, "data": {{"object": {{"v": {literal}}}}}}}'.encode()
    assert invalid_event_message(raw) == "data.object.v is a number outside the range of PostgreSQL's numeric type"


def test_large_exponent_within_numeric_range_accepted() -> None:
    """1e400 overflows a float but fits PostgreSQL's numeric type, so it is stored."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"v": 1e400}}}'
    assert parse_event(raw).event_id == "evt_1"


def test_integer_beyond_python_digit_limit_accepted() -> None:
    """An integer longer than int()'s 4300-digit limit fits PostgreSQL's numeric type, so it is stored."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"v": ' + b"9" * 5000 + b"}}}"
    assert parse_event(raw).event_id == "evt_1"


def test_integer_beyond_numeric_digits_rejected() -> None:
    """An integer of more than 131072 digits is outside PostgreSQL's numeric type, naming the field."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"v": ' + b"9" * 131_073 + b"}}}"
    assert invalid_event_message(raw) == "data.object.v is a number outside the range of PostgreSQL's numeric type"


def test_created_beyond_python_digit_limit_rejected() -> None:
    """A 5000-digit created is not an integer in range, so the event is invalid."""
    raw = b'{"id": "evt_1", "type": "x", "created": ' + b"9" * 5000 + b', "data": {"object": {}}}'
    assert invalid_event_message(raw).startswith("created")


def test_zero_with_large_exponent_accepted() -> None:
    """0e131072 is zero, which PostgreSQL's numeric type stores, so the event is valid."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"v": 0e131072}}}'
    assert parse_event(raw).event_id == "evt_1"


def test_nesting_at_limit_accepted() -> None:
    """A document nested exactly MAX_NESTING_DEPTH levels is valid."""
    # The event object and data take two levels; inner has the remaining ones.
    inner: Any = {}
    for _ in range(MAX_NESTING_DEPTH - 3):
        inner = {"a": inner}
    assert parse_event(encode(event_document(data={"object": inner}))).event_id == "evt_1"


def test_nesting_over_limit_rejected() -> None:
    """One level more than MAX_NESTING_DEPTH is rejected."""
    inner: Any = {}
    for _ in range(MAX_NESTING_DEPTH - 2):
        inner = {"a": inner}
    assert "nests deeper than 64 levels" in invalid_event_message(encode(event_document(data={"object": inner})))


def test_deep_nesting_beyond_recursion_limit_rejected() -> None:
    """Nesting that would exhaust the recursion limit is invalid_event, not RecursionError."""
    raw = b'{"id": "evt_1", "data": {"object": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"
    assert "nests deeper than 64 levels" in invalid_event_message(raw)


def test_payment_intent_update_built() -> None:
    """A payment_intent event yields the fields the payments table stores."""
    data_object = {"id": "pi_1", "status": "succeeded", "amount": 2000, "currency": "EUR", "customer": "cus_1"}
    event = parse_event(encode(event_document(type="payment_intent.succeeded", data={"object": data_object})))
    assert event.payment_update == PaymentIntentUpdate("pi_1", "succeeded", 6, 2000, "eur", "cus_1")


def test_payment_intent_without_customer_accepted() -> None:
    """customer may be null."""
    data_object = {"id": "pi_1", "status": "processing", "amount": 0, "currency": "usd", "customer": None}
    event = parse_event(encode(event_document(type="payment_intent.processing", data={"object": data_object})))
    assert isinstance(event.payment_update, PaymentIntentUpdate)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": None}, "data.object.id"),
        ({"status": ""}, "data.object.status"),
        ({"status": "requires_reauthorization"}, "data.object.status"),
        ({"amount": "2000"}, "data.object.amount"),
        ({"amount": -1}, "data.object.amount"),
        ({"amount": 2**63}, "data.object.amount"),
        ({"currency": 978}, "data.object.currency"),
        ({"customer": 42}, "data.object.customer"),
    ],
)
def test_payment_intent_unusable_field_skips_update(changes: dict[str, Any], field: str) -> None:
    """An unusable payment field leaves the event valid, with a skipped update naming the field."""
    data_object = {"id": "pi_1", "status": "succeeded", "amount": 2000, "currency": "eur", "customer": "cus_1"}
    data_object.update(changes)
    event = parse_event(encode(event_document(type="payment_intent.succeeded", data={"object": data_object})))
    assert isinstance(event.payment_update, SkippedPaymentUpdate)
    assert event.payment_update.field == field


def test_charge_refunded_update_built() -> None:
    """charge.refunded yields the payment intent and the refunded total."""
    data_object = {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 500}
    event = parse_event(encode(event_document(type="charge.refunded", data={"object": data_object})))
    assert event.payment_update == RefundUpdate("pi_1", 500)


def test_charge_refunded_without_payment_intent_has_no_update() -> None:
    """A refunded charge without a payment intent is stored with no payment update."""
    data_object = {"id": "ch_1", "payment_intent": None, "amount_refunded": 500}
    assert (
        parse_event(encode(event_document(type="charge.refunded", data={"object": data_object}))).payment_update is None
    )


def test_charge_refunded_missing_amount_skips_update() -> None:
    """charge.refunded without amount_refunded is valid, with a skipped update naming the field."""
    data_object = {"id": "ch_1", "payment_intent": "pi_1"}
    event = parse_event(encode(event_document(type="charge.refunded", data={"object": data_object})))
    assert event.payment_update == SkippedPaymentUpdate(
        "data.object.amount_refunded", "data.object.amount_refunded is missing"
    )


def test_duplicate_key_named_with_path() -> None:
    """A key that occurs twice in one object is invalid_event naming the object and the key."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"x": "a", "x": "ok"}}}'
    assert invalid_event_message(raw) == 'data.object has duplicate key "x"'


def test_duplicate_key_hiding_nul_rejected() -> None:
    """A NUL character under a key that a later duplicate overwrites is still rejected."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"x": "\\u0000", "x": "ok"}}}'
    assert invalid_event_message(raw) == 'data.object has duplicate key "x"'


@pytest.mark.parametrize(
    "hidden",
    [b"NaN", b'"\\ud800"', b"1e999999", b"[" * 100 + b"]" * 100],
    ids=["NaN", "lone surrogate", "huge number", "deep nesting"],
)
def test_duplicate_key_hiding_unstorable_value_rejected(hidden: bytes) -> None:
    """NaN, a lone surrogate, a huge number or deep nesting hidden under a duplicate key is rejected."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"x": ' + hidden + b', "x": 1}}}'
    with pytest.raises(InvalidEvent):
        parse_event(raw)


def test_duplicate_top_level_key_named() -> None:
    """A duplicate id at the top level names the body."""
    raw = b'{"id": "evt_0", "id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}}'
    assert invalid_event_message(raw) == 'body has duplicate key "id"'


def test_duplicate_key_written_as_escape_detected() -> None:
    """A key spelled with an escape (\\u0069d) duplicates the same key written plainly."""
    raw = b'{"\\u0069d": "evt_0", "id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}}'
    assert invalid_event_message(raw) == 'body has duplicate key "id"'


def test_duplicate_key_in_array_item_named() -> None:
    """A duplicate key inside an array item names the index."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"lines": [{}, {"a": 1, "a": 2}]}}}'
    assert invalid_event_message(raw) == 'data.object.lines[1] has duplicate key "a"'


def test_long_key_cut_in_message() -> None:
    """A key longer than 40 characters appears cut to 40, with an ellipsis, in the message."""
    key = "jenny.rosen@example.com 4242424242424242 exp 12/34"
    raw = encode(event_document(data={"object": {"metadata": {key: "x\u0000"}}}))
    assert invalid_event_message(raw) == (
        'data.object.metadata["jenny.rosen@example.com [digits]"...] contains a NUL character'
    )


def test_card_number_in_duplicate_key_masked() -> None:
    """A key holding a card-number-like run of digits is masked in the duplicate-key message."""
    raw = b'{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {"4242424242424242": 1, "4242424242424242": 2}}}'
    assert invalid_event_message(raw) == 'data.object has duplicate key "[digits]"'


def test_long_plain_key_cut_in_message() -> None:
    """A long key of letters and digits is cut to 40 characters in the dotted path."""
    raw = encode(event_document(data={"object": {"k" * 60: "x\u0000"}}))
    assert invalid_event_message(raw) == f"data.object.{'k' * 40}... contains a NUL character"


def test_long_duplicate_key_cut_in_message() -> None:
    """A long duplicate key is cut to 40 characters in the message."""
    key = "a" * 60
    raw = f'{{"id": "evt_1", "type": "x", "created": 1, "data": {{"object": {{"{key}": 1, "{key}": 2}}}}}}'.encode()
    assert invalid_event_message(raw) == f'data.object has duplicate key "{"a" * 40}"...'
