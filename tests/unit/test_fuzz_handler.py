"""Property-based fuzzing of the webhook handler against a real, migrated PostgreSQL database.

Three tests share one oracle written from the webhook contract:

- ``test_arbitrary_requests_never_500`` (property): a well-formed signed request with one
  part, or every part, made random. The parts are the body (bytes, text, hostile events),
  the transport (the base64 flag on and off, invalid base64), the Stripe-Signature
  elements (random ``t``, ``v1`` and ``v0``), duplicate signature headers in other letter
  cases, other headers, and the event's shape. The handler never raises and responds with
  200, 400 or 413 and the contract's body. A rejection writes no row, and only a request
  with a correct ``v1`` for a fresh ``t`` is accepted.
- ``test_signed_hostile_events_rejected_or_stored`` (property): validly signed events with
  at most one defect, plus content the contract allows (long strings and keys, huge
  numbers, deep nesting, huge arrays). The oracle decides whether each must be stored,
  must be rejected with ``invalid_event`` naming the field, or must get 413. Where the
  contract leaves the choice to the function (nesting limits, a ``null`` livemode, a byte
  order mark), a 400 or a correct row both pass. A stored row's payload must equal the
  sent JSON, compared as parsed JSON with exact decimal numbers, because jsonb normalises
  the text. A payment event whose payment fields cannot be used must be stored without
  its payment update.
- ``test_signed_hostile_catalogue``: every listed hostile value once, so each is tried on
  every run whatever the property tests happen to draw.

The properties run a fixed number of derandomized examples (the ``webhook-fuzz-ci``
profile), so every CI run tries the same inputs. ``WEBHOOK_FUZZ_EXAMPLES`` raises the
count for a longer local run. All examples of a test share one database, so every example
counts the rows before and after instead of assuming an empty table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st
from webhook_test_helpers import FakeLambdaContext, WebhookEnvironment

from payment_webhook.handlers.webhook import lambda_handler
from tests.reliability.figures import record_figures

FUZZ_EXAMPLES = int(os.environ.get("WEBHOOK_FUZZ_EXAMPLES", "300"))
settings.register_profile(
    "webhook-fuzz-ci",
    derandomize=True,
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FUZZ_SETTINGS = settings.get_profile("webhook-fuzz-ci")

MAX_BODY_BYTES = 1_048_576
MAX_CREATED = 253_402_300_799
BIGINT_MAX = 2**63 - 1
TOLERANCE_SECONDS = 300
REJECTION_CODES = frozenset(
    {"missing_signature", "malformed_signature", "invalid_signature", "timestamp_outside_tolerance", "invalid_event"}
)
# Nesting up to this depth inside data.object must be stored, because Stripe objects nest a
# handful of levels. The contract sets no limit, so deeper nesting may be rejected.
SAFE_NESTING = 30
SIGNATURE_NAME_VARIANTS = ("Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE", "sTrIpE-SiGnAtUrE")


class Verdict(Enum):
    """What the contract requires for a validly signed body."""

    STORE = "store"
    # Stored and acknowledged, with the payment update skipped: no payments row for the event.
    STORE_WITHOUT_PAYMENT = "store without payment update"
    REJECT = "reject"
    EITHER = "either"


@dataclass(frozen=True)
class Raw:
    """A JSON literal written into the body as is (numbers Python would print differently, deep nesting)."""

    literal: str


class Missing:
    """Marks a field that the body leaves out."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


# --- catalogues of hostile values: (value, verdict, label) -----------------------------


def string_field_cases(
    max_chars: int, character: str = "x", *, usable: Verdict = Verdict.STORE, unusable: Verdict = Verdict.REJECT
) -> list[tuple[Any, Verdict, str]]:
    """Return values for a required string field of 1 to ``max_chars`` characters.

    ``usable`` is the verdict for a string of the right length, ``unusable`` for a value of
    the wrong kind or length. A NUL character or a lone surrogate is always rejected,
    because jsonb cannot store it.
    """
    return [
        (MISSING, unusable, "missing"),
        ("", unusable, "empty"),
        (character, usable, "1 character"),
        (character * max_chars, usable, f"{max_chars} characters"),
        (character * (max_chars + 1), unusable, f"{max_chars + 1} characters"),
        (character * 10_000, unusable, "10,000 characters"),
        (0, unusable, "number"),
        (1.5, unusable, "float"),
        (True, unusable, "bool"),
        (None, unusable, "null"),
        (["x"], unusable, "array"),
        ({"k": "v"}, unusable, "object"),
        (character + "\x00", Verdict.REJECT, "NUL"),
        ("\ud800" + character, Verdict.REJECT, "lone surrogate"),
    ]


def payment_id_cases(character: str = "x") -> list[tuple[Any, Verdict, str]]:
    """Return values for data.object.id of a payment intent: an unusable one skips the payment update."""
    return string_field_cases(255, character, unusable=Verdict.STORE_WITHOUT_PAYMENT)


def status_cases(character: str = "x") -> list[tuple[Any, Verdict, str]]:
    """Return values for data.object.status: a status the function does not rank skips the payment update."""
    known = [(status, Verdict.STORE, status) for status in ("requires_payment_method", "processing", "canceled")]
    unknown = string_field_cases(
        255, character, usable=Verdict.STORE_WITHOUT_PAYMENT, unusable=Verdict.STORE_WITHOUT_PAYMENT
    )
    return known + unknown


CREATED_CASES: list[tuple[Any, Verdict, str]] = [
    (0, Verdict.STORE, "0"),
    (MAX_CREATED, Verdict.STORE, "year 9999"),
    (Raw("-0"), Verdict.STORE, "-0"),
    (MAX_CREATED + 1, Verdict.REJECT, "after year 9999"),
    (-1, Verdict.REJECT, "negative"),
    (1.5, Verdict.REJECT, "float"),
    (Raw("1733300000.0"), Verdict.REJECT, "integral float"),
    (Raw("1e3"), Verdict.REJECT, "exponent"),
    (True, Verdict.REJECT, "true"),
    (False, Verdict.REJECT, "false"),
    (2**63, Verdict.REJECT, "2**63"),
    (Raw("1" + "0" * 400), Verdict.REJECT, "10**400"),
    ("1733300000", Verdict.REJECT, "string"),
    (None, Verdict.REJECT, "null"),
    (MISSING, Verdict.REJECT, "missing"),
    ([], Verdict.REJECT, "array"),
]

LIVEMODE_CASES: list[tuple[Any, Verdict, str]] = [
    (True, Verdict.STORE, "true"),
    (False, Verdict.STORE, "false"),
    (MISSING, Verdict.STORE, "missing"),
    # The contract requires an "optional boolean", so whether null counts as absent is the function's choice.
    (None, Verdict.EITHER, "null"),
    (0, Verdict.REJECT, "0"),
    ("true", Verdict.REJECT, "string"),
    ({}, Verdict.REJECT, "object"),
]

DATA_CASES: list[tuple[Any, Verdict, str]] = [
    (MISSING, Verdict.REJECT, "missing"),
    (None, Verdict.REJECT, "null"),
    ([], Verdict.REJECT, "array"),
    ("object", Verdict.REJECT, "string"),
    (5, Verdict.REJECT, "number"),
]

DATA_OBJECT_CASES: list[tuple[Any, Verdict, str]] = [
    (MISSING, Verdict.REJECT, "missing"),
    (None, Verdict.REJECT, "null"),
    ([], Verdict.REJECT, "array"),
    ("customer", Verdict.REJECT, "string"),
    (5, Verdict.REJECT, "number"),
    ({}, Verdict.STORE, "empty object"),
]

# JSON number literals inside data.object. PostgreSQL 16's numeric type, which jsonb uses,
# holds up to 131072 digits before the decimal point and 16383 after it.
NUMBER_LITERAL_CASES: list[tuple[str, Verdict]] = [
    ("9223372036854775808", Verdict.STORE),
    ("-9223372036854775809", Verdict.STORE),
    ("1.5", Verdict.STORE),
    ("0.1", Verdict.STORE),
    ("-0.0", Verdict.STORE),
    ("1E+2", Verdict.STORE),
    ("1e308", Verdict.STORE),
    ("1e400", Verdict.STORE),
    ("1e-400", Verdict.STORE),
    ("1" + "0" * 400, Verdict.STORE),
    ("1e131071", Verdict.STORE),
    ("1e-16383", Verdict.STORE),
    ("1e131072", Verdict.REJECT),
    ("1e-16384", Verdict.REJECT),
    ("NaN", Verdict.REJECT),
    ("-Infinity", Verdict.REJECT),
    # Valid JSON that jsonb stores, but Python refuses to parse integers of more than 4300 digits.
    ("1" + "0" * 5000, Verdict.EITHER),
]

NESTING_DEPTHS = (1, 2, 10, SAFE_NESTING, 61, 62, 63, 64, 100, 1000, 2000)
# Zeros take two bytes each: 520,000 stay under 1 MiB, 600,000 do not.
ARRAY_LENGTHS = (0, 1_000, 100_000, 520_000, 600_000)

# Payment fields are outside the contract: a value the payments table cannot use skips the
# payment update, and the event is still stored.
AMOUNT_CASES: list[tuple[Any, Verdict, str]] = [
    (0, Verdict.STORE, "0"),
    (BIGINT_MAX, Verdict.STORE, "2**63 - 1"),
    (BIGINT_MAX + 1, Verdict.STORE_WITHOUT_PAYMENT, "2**63"),
    (-1, Verdict.STORE_WITHOUT_PAYMENT, "negative"),
    (1.5, Verdict.STORE_WITHOUT_PAYMENT, "float"),
    ("100", Verdict.STORE_WITHOUT_PAYMENT, "string"),
    (True, Verdict.STORE_WITHOUT_PAYMENT, "bool"),
    (None, Verdict.STORE_WITHOUT_PAYMENT, "null"),
    (MISSING, Verdict.STORE_WITHOUT_PAYMENT, "missing"),
]

CURRENCY_CASES: list[tuple[Any, Verdict, str]] = [
    ("EUR", Verdict.STORE, "upper case"),
    ("usd", Verdict.STORE, "lower case"),
    ("eu", Verdict.STORE, "2 letters"),
    ("euro", Verdict.STORE, "4 letters"),
    ("€ur", Verdict.STORE, "symbol"),
    ("c" * 255, Verdict.STORE, "255 characters"),
    ("", Verdict.STORE_WITHOUT_PAYMENT, "empty"),
    ("c" * 256, Verdict.STORE_WITHOUT_PAYMENT, "256 characters"),
    (978, Verdict.STORE_WITHOUT_PAYMENT, "ISO number"),
    (MISSING, Verdict.STORE_WITHOUT_PAYMENT, "missing"),
]

# customer and a charge's payment_intent: an id, null, absent, or an expanded object with an id.
OPTIONAL_ID_CASES: list[tuple[Any, Verdict, str]] = [
    (None, Verdict.STORE, "null"),
    (MISSING, Verdict.STORE, "missing"),
    ({"id": "cus_expanded", "object": "customer"}, Verdict.STORE, "expanded object"),
    ({"object": "customer"}, Verdict.STORE_WITHOUT_PAYMENT, "expanded object without id"),
    ("", Verdict.STORE_WITHOUT_PAYMENT, "empty"),
    ("c" * 256, Verdict.STORE_WITHOUT_PAYMENT, "256 characters"),
    (5, Verdict.STORE_WITHOUT_PAYMENT, "number"),
]

TEXT_DEFECTS = (
    "duplicate id key",
    "duplicate key hiding NUL",
    "whitespace around",
    "raw NUL in a string",
    "raw lone surrogate",
    "invalid UTF-8",
    "byte order mark",
    "trailing data",
    "top-level array",
    "top-level string",
    "top-level null",
    "empty body",
)


# --- hostile bodies -------------------------------------------------------------------


@dataclass
class HostileBody:
    """A body for a validly signed request and what the function must do with it."""

    document: Any
    verdict: Verdict
    field_name: str | None
    description: str
    text_edit: Callable[[str], str] | None = None
    byte_edit: Callable[[bytes], bytes] | None = None
    expected_payment: dict[str, Any] | None = None
    payment_intent_id: str | None = None

    def render(self) -> bytes:
        """Return the body bytes: the document as JSON with raw literals in place and the edits applied."""
        return render_body(self.document, self.text_edit, self.byte_edit)


def render_body(
    document: Any, text_edit: Callable[[str], str] | None = None, byte_edit: Callable[[bytes], bytes] | None = None
) -> bytes:
    """Serialise ``document`` with ``Raw`` literals in place, then apply the text and byte edits."""
    literals: dict[str, str] = {}

    def replace_raw(value: Any) -> Any:
        if isinstance(value, Raw):
            marker = f"@@raw-{len(literals)}@@"
            literals[marker] = value.literal
            return marker
        if isinstance(value, dict):
            return {key: replace_raw(child) for key, child in value.items() if child is not MISSING}
        if isinstance(value, list):
            return [replace_raw(child) for child in value]
        return value

    text = json.dumps(replace_raw(document))
    for marker, literal in literals.items():
        text = text.replace(json.dumps(marker), literal, 1)
    if text_edit is not None:
        text = text_edit(text)
    raw = text.encode("utf-8", "surrogatepass")
    if byte_edit is not None:
        raw = byte_edit(raw)
    return raw


def parse_exact(text: str) -> Any:
    """Parse JSON with every number as a Decimal, so 1e308 and its jsonb form 1000...0 compare equal."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def base_document(event_type: str, data_object: dict[str, Any]) -> dict[str, Any]:
    """Return a valid event with a fresh id."""
    return {
        "id": f"evt_fuzz_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": 1_733_300_000,
        "livemode": False,
        "data": {"object": data_object},
    }


def plain_document(event_type: str = "customer.updated") -> dict[str, Any]:
    return base_document(event_type, {"id": "cus_fuzz", "object": "customer"})


def set_field(container: dict[str, Any], key: str, value: Any) -> None:
    """Set ``container[key]``, or remove the key when ``value`` is MISSING."""
    if value is MISSING:
        container.pop(key, None)
    else:
        container[key] = value


def is_payment_type(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("payment_intent.") or value == "charge.refunded")


def envelope_body(target: str, value: Any, verdict: Verdict, label: str, event_type: str = "customer.updated") -> HostileBody:
    """Return a plain event with ``value`` in the top-level field ``target`` (``data.object`` for the inner object)."""
    document = plain_document(event_type)
    if target == "data.object":
        set_field(document["data"], "object", value)
    else:
        if target == "type" and is_payment_type(value):
            value = "x" + value[1:]
        set_field(document, target, value)
    field_name = target if verdict is Verdict.REJECT else None
    return HostileBody(document, verdict, field_name, f"{target}: {label}")


def extra_body(key: str, value: Any, verdict: Verdict, label: str, event_type: str = "customer.updated") -> HostileBody:
    """Return a plain event whose data.object carries ``value`` under ``key``."""
    document = plain_document(event_type)
    document["data"]["object"][key] = value
    field_name = "data.object" if verdict is Verdict.REJECT else None
    return HostileBody(document, verdict, field_name, f"data.object extra: {label}")


def nesting_value(depth: int, as_arrays: bool) -> tuple[Raw, Verdict, str]:
    """Return nesting ``depth`` levels deep as a raw literal (json.dumps itself stops near 1,000 levels)."""
    literal = "[" * depth + "]" * depth if as_arrays else '{"a":' * depth + "{}" + "}" * depth
    verdict = Verdict.STORE if depth <= SAFE_NESTING else Verdict.EITHER
    return Raw(literal), verdict, f"nesting {depth} ({'arrays' if as_arrays else 'objects'})"


def array_value(length: int) -> tuple[Raw, Verdict, str]:
    """Return an array of ``length`` zeros as a raw literal."""
    return Raw("[" + ",".join("0" * length) + "]"), Verdict.STORE, f"array of {length:,}"


def unstorable_at_depth(depth: int, bad: str, in_key: bool, prefix: str = "k") -> tuple[Any, Verdict, str]:
    """Return a value with ``bad`` (NUL or a lone surrogate) in a key or a string ``depth`` levels down."""
    inner: Any = {prefix + bad: "v"} if in_key else {"k": prefix + bad}
    for level in range(depth - 1):
        inner = [inner] if level % 2 else {"n": inner}
    return inner, Verdict.REJECT, f"{bad!r} in a {'key' if in_key else 'value'} {depth} deep"


def payment_intent_body(target: str, value: Any, verdict: Verdict, label: str, status: str = "succeeded") -> HostileBody:
    """Return a payment_intent event with ``value`` in ``data.object.<target>``."""
    payment_intent_id = f"pi_fuzz_{uuid.uuid4().hex}"
    data_object: dict[str, Any] = {
        "id": payment_intent_id,
        "object": "payment_intent",
        "status": status,
        "amount": 2000,
        "currency": "eur",
        "customer": "cus_fuzz",
    }
    document = base_document(f"payment_intent.{status}", data_object)
    set_field(data_object, target, value)
    expected = None
    if verdict is Verdict.STORE and data_object.get("id") == payment_intent_id:
        customer = data_object.get("customer")
        expected = {
            "status": data_object["status"],
            "amount": data_object["amount"],
            "currency": data_object["currency"].lower(),
            "customer": customer["id"] if isinstance(customer, dict) else customer,
            "amount_refunded": 0,
        }
    return HostileBody(
        document,
        verdict,
        f"data.object.{target}" if verdict is not Verdict.STORE else None,
        f"payment_intent data.object.{target}: {label}",
        expected_payment=expected,
        payment_intent_id=payment_intent_id,
    )


def refund_body(target: str, value: Any, verdict: Verdict, label: str) -> HostileBody:
    """Return a charge.refunded event with ``value`` in ``data.object.<target>``."""
    payment_intent_id = f"pi_fuzz_{uuid.uuid4().hex}"
    charge: dict[str, Any] = {
        "id": "ch_fuzz",
        "object": "charge",
        "amount": 2000,
        "amount_refunded": 500,
        "currency": "eur",
        "payment_intent": payment_intent_id,
    }
    document = base_document("charge.refunded", charge)
    if target == "payment_intent" and isinstance(value, dict) and "id" in value:
        # An expanded payment intent object, with this body's fresh id.
        value = {"id": payment_intent_id, "object": "payment_intent"}
    set_field(charge, target, value)
    referenced = charge.get("payment_intent")
    if isinstance(referenced, dict):
        referenced = referenced.get("id")
    expected = None
    if verdict is Verdict.STORE and referenced == payment_intent_id:
        expected = {"status": None, "amount": None, "currency": None, "amount_refunded": charge["amount_refunded"]}
    return HostileBody(
        document,
        verdict,
        f"data.object.{target}" if verdict is not Verdict.STORE else None,
        f"charge.refunded data.object.{target}: {label}",
        expected_payment=expected,
        payment_intent_id=payment_intent_id,
    )


def text_defect_body(kind: str) -> HostileBody:
    """Return a plain event whose JSON text or bytes are changed as ``kind`` names."""
    document = plain_document()
    first_id = f"evt_fuzz_first_{uuid.uuid4().hex}"
    edits: dict[str, tuple[Callable[[str], str] | None, Callable[[bytes], bytes] | None, Verdict, str | None]] = {
        # jsonb parses every value of a repeated key, so a duplicate key is rejected.
        "duplicate id key": (lambda text: '{"id": "' + first_id + '", ' + text[1:], None, Verdict.REJECT, "body"),
        "duplicate key hiding NUL": (
            lambda text: text.replace('"id": "cus_fuzz"', '"id": "cus\\u0000", "id": "cus_fuzz"'),
            None,
            Verdict.REJECT,
            "data.object",
        ),
        "whitespace around": (lambda text: " \r\n\t" + text + "\n ", None, Verdict.STORE, None),
        "raw NUL in a string": (lambda text: text.replace('"cus_fuzz"', '"cus\x00fuzz"'), None, Verdict.REJECT, "body"),
        "raw lone surrogate": (lambda text: text.replace('"cus_fuzz"', '"cus\ud800fuzz"'), None, Verdict.REJECT, "body"),
        "invalid UTF-8": (None, lambda raw: raw.replace(b'"cus_fuzz"', b'"cus\xff\xfefuzz"'), Verdict.REJECT, "body"),
        # RFC 8259 lets a parser ignore a byte order mark or reject it.
        "byte order mark": (lambda text: "\ufeff" + text, None, Verdict.EITHER, None),
        "trailing data": (lambda text: text + "{}", None, Verdict.REJECT, "body"),
        "top-level array": (lambda text: "[" + text + "]", None, Verdict.REJECT, "body"),
        "top-level string": (lambda text: json.dumps(text), None, Verdict.REJECT, "body"),
        "top-level null": (lambda text: "null", None, Verdict.REJECT, "body"),
        "empty body": (lambda text: "", None, Verdict.REJECT, "body"),
    }
    text_edit, byte_edit, verdict, field_name = edits[kind]
    return HostileBody(document, verdict, field_name, kind, text_edit=text_edit, byte_edit=byte_edit)


def catalogue() -> list[HostileBody]:
    """Return one body for every hostile value listed in this module."""
    bodies: list[HostileBody] = []
    for target in ("id", "type"):
        for character in ("x", "é", "\U0001f600"):
            bodies += [envelope_body(target, *case) for case in string_field_cases(255, character)]
    bodies += [envelope_body("created", *case) for case in CREATED_CASES]
    bodies += [envelope_body("livemode", *case) for case in LIVEMODE_CASES]
    bodies += [envelope_body("data", *case) for case in DATA_CASES]
    bodies += [envelope_body("data.object", *case) for case in DATA_OBJECT_CASES]
    bodies += [envelope_body("object", value, Verdict.STORE, f"{value!r}") for value in (None, 5, "charge", [], MISSING)]
    bodies += [extra_body("n", Raw(literal), verdict, f"number {literal[:20]}") for literal, verdict in NUMBER_LITERAL_CASES]
    bodies += [extra_body("nested", *nesting_value(depth, arrays)) for depth in NESTING_DEPTHS for arrays in (True, False)]
    bodies += [extra_body("zeros", *array_value(length)) for length in ARRAY_LENGTHS]
    bodies += [extra_body("s", "y" * length, Verdict.STORE, f"string of {length:,}") for length in (256, 10_000, 100_000)]
    bodies += [extra_body("k" * 10_000, "v", Verdict.STORE, "key of 10,000 characters")]
    bodies += [extra_body("", "v", Verdict.STORE, "empty key")]
    for bad in ("\x00", "\ud800", "\udfff"):
        for in_key in (True, False):
            bodies += [extra_body("deep", *unstorable_at_depth(depth, bad, in_key)) for depth in (1, 2, 10)]
    bodies += [payment_intent_body("id", *case) for case in payment_id_cases()]
    bodies += [payment_intent_body("status", *case) for case in status_cases()]
    bodies += [payment_intent_body("amount", *case) for case in AMOUNT_CASES]
    bodies += [payment_intent_body("currency", *case) for case in CURRENCY_CASES]
    bodies += [payment_intent_body("customer", *case) for case in OPTIONAL_ID_CASES]
    bodies += [refund_body("amount_refunded", *case) for case in AMOUNT_CASES]
    bodies += [refund_body("payment_intent", *case) for case in OPTIONAL_ID_CASES]
    bodies += [text_defect_body(kind) for kind in TEXT_DEFECTS]
    return bodies


# --- strategies -----------------------------------------------------------------------

# Characters that jsonb stores: any code point except NUL and the UTF-16 surrogates.
storable_characters = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
storable_text = st.text(storable_characters, max_size=40)
plain_event_types = storable_text.filter(lambda text: 1 <= len(text) <= 255 and not is_payment_type(text))


@st.composite
def envelope_defects(draw: st.DrawFn) -> HostileBody:
    """Return a plain event with one hostile value in id, type, created, livemode, data, data.object or object."""
    target = draw(st.sampled_from(["id", "type", "created", "livemode", "data", "data.object", "object"]))
    if target in ("id", "type"):
        case = draw(st.sampled_from(string_field_cases(255, draw(storable_characters))))
    elif target == "object":
        case = (draw(st.one_of(storable_text, st.sampled_from([None, 5, [], MISSING]))), Verdict.STORE, "any value")
    else:
        cases = {"created": CREATED_CASES, "livemode": LIVEMODE_CASES, "data": DATA_CASES, "data.object": DATA_OBJECT_CASES}
        case = draw(st.sampled_from(cases[target]))
    return envelope_body(target, *case, event_type=draw(plain_event_types))


extra_values = st.one_of(
    st.sampled_from([255, 256, 10_000, 100_000]).flatmap(
        lambda length: storable_characters.map(lambda character: (character * length, Verdict.STORE, f"string of {length}"))
    ),
    storable_text.map(lambda text: (text, Verdict.STORE, "unicode text")),
    st.sampled_from([0, 1.5, True, None, [], ["x"], {}, {"k": "v"}]).map(lambda value: (value, Verdict.STORE, "any kind")),
    st.sampled_from(NUMBER_LITERAL_CASES).map(lambda case: (Raw(case[0]), case[1], f"number {case[0][:20]}")),
    st.builds(nesting_value, st.sampled_from(NESTING_DEPTHS), st.booleans()),
    st.builds(array_value, st.sampled_from(ARRAY_LENGTHS)),
    st.builds(
        unstorable_at_depth, st.integers(1, 10), st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d"]), st.booleans(), storable_text
    ),
)
extra_keys = st.one_of(st.just("metadata_extra"), st.just(""), st.just("k" * 10_000), storable_text.map(lambda text: "x_" + text))


@st.composite
def extra_content(draw: st.DrawFn) -> HostileBody:
    """Return a plain event whose data.object carries hostile content the contract allows, or a NUL or surrogate."""
    key = draw(extra_keys)
    value, verdict, label = draw(extra_values)
    return extra_body(key, value, verdict, label, event_type=draw(plain_event_types))


@st.composite
def payment_defects(draw: st.DrawFn) -> HostileBody:
    """Return a payment_intent.* or charge.refunded event with one hostile value in a field the payments table needs."""
    if draw(st.booleans()):
        target = draw(st.sampled_from(["id", "status", "amount", "currency", "customer"]))
        cases = {
            "id": payment_id_cases(draw(storable_characters)),
            "status": status_cases(draw(storable_characters)),
            "amount": AMOUNT_CASES,
            "currency": CURRENCY_CASES,
            "customer": OPTIONAL_ID_CASES,
        }
        status = draw(st.sampled_from(["requires_payment_method", "processing", "succeeded", "canceled"]))
        return payment_intent_body(target, *draw(st.sampled_from(cases[target])), status=status)
    target = draw(st.sampled_from(["amount_refunded", "payment_intent"]))
    cases = {"amount_refunded": AMOUNT_CASES, "payment_intent": OPTIONAL_ID_CASES}
    return refund_body(target, *draw(st.sampled_from(cases[target])))


hostile_bodies = st.one_of(
    envelope_defects(), extra_content(), st.sampled_from(TEXT_DEFECTS).map(text_defect_body), payment_defects()
)

header_names = st.one_of(
    st.sampled_from([*SIGNATURE_NAME_VARIANTS, "content-type", "Content-Type", "x-forwarded-for", "host"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=20),
)
other_header_names = header_names.filter(lambda name: name.lower() != "stripe-signature")
header_values = st.one_of(st.text(max_size=60), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2))


@dataclass
class SignaturePart:
    """One ``key=value`` element of a generated Stripe-Signature header.

    A ``v1`` of ``<valid>`` is replaced by the correct signature for the header's first
    ``t``. A ``t`` of ``<now>``, ``<old>`` or ``<future>`` is replaced by a time relative to
    the request.
    """

    key: str
    value: str


random_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)
# One fresh t and a correct v1 among other elements, in any order: such a header passes.
well_formed_parts = st.lists(st.builds(SignaturePart, st.sampled_from(["v1", "v0"]), random_hex), max_size=3).flatmap(
    lambda others: st.permutations([SignaturePart("t", "<now>"), SignaturePart("v1", "<valid>"), *others])
)
random_part = st.one_of(
    st.builds(SignaturePart, st.just("t"), st.sampled_from(["<now>", "<old>", "<future>"])),
    st.builds(SignaturePart, st.just("t"), st.one_of(st.integers(-5, 10**13).map(str), st.text(max_size=14))),
    st.builds(SignaturePart, st.sampled_from(["v1", "v0"]), st.one_of(random_hex, st.text(max_size=70))),
    st.builds(SignaturePart, st.sampled_from(["T", " t", "v2", "", "t ", "V1"]), st.text(max_size=20)),
)


@st.composite
def broken_parts(draw: st.DrawFn) -> list[SignaturePart]:
    """Return well-formed parts with one thing wrong: the v1, the t, a missing or an extra element."""
    parts = list(draw(well_formed_parts))
    change = draw(st.sampled_from(["wrong v1", "stale t", "future t", "t not digits", "no v1", "no t", "second t", "random"]))
    if change == "wrong v1":
        parts = [SignaturePart("v1", draw(random_hex)) if part.value == "<valid>" else part for part in parts]
    elif change in ("stale t", "future t", "t not digits"):
        value = {"stale t": "<old>", "future t": "<future>", "t not digits": draw(st.text(max_size=14))}[change]
        parts = [SignaturePart("t", value) if part.key == "t" else part for part in parts]
    elif change == "no v1":
        parts = [part for part in parts if part.key != "v1"]
    elif change == "no t":
        parts = [part for part in parts if part.key != "t"]
    elif change == "second t":
        parts.insert(draw(st.integers(0, len(parts))), SignaturePart("t", draw(st.sampled_from(["<now>", "<old>", "1"]))))
    else:
        parts.insert(draw(st.integers(0, len(parts))), draw(random_part))
    return parts


@dataclass
class RequestPlan:
    """A random invocation event before the signing secret and the clock are applied."""

    body: bytes
    transport: str
    signature_parts: list[SignaturePart] | None
    signature_header_names: list[str]
    separator: str
    other_headers: dict[str, Any]
    shape: str
    flag_value: Any
    perturbed: str


PERTURBATIONS = ("none", "body", "transport", "signature", "header names", "other headers", "shape", "everything")


@st.composite
def request_plans(draw: st.DrawFn) -> RequestPlan:
    """Return a plan for one invocation event: a well-formed signed request with one part (or all) made random."""
    perturbed = draw(st.sampled_from(PERTURBATIONS))
    everything = perturbed == "everything"
    if perturbed == "body" or everything:
        body = draw(
            st.one_of(
                hostile_bodies.map(HostileBody.render),
                st.binary(max_size=300),
                st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
            )
        )
    else:
        body = render_body(plain_document())
    if perturbed == "transport" or everything:
        transport = draw(st.sampled_from(["invalid base64", "text flagged base64", "no body", "non-string body"]))
    else:
        transport = draw(st.sampled_from(["text", "base64"]))
    if perturbed == "signature" or everything:
        parts = draw(st.one_of(broken_parts(), st.lists(random_part, max_size=6), st.none()))
        separator = draw(st.sampled_from([",", ", ", " , ", ";", ",,"]))
    else:
        parts = draw(well_formed_parts)
        separator = draw(st.sampled_from([",", ", "]))
    if perturbed == "header names" or everything:
        names = draw(st.lists(st.sampled_from(SIGNATURE_NAME_VARIANTS), min_size=2, max_size=3, unique=True))
    else:
        names = [draw(st.sampled_from(SIGNATURE_NAME_VARIANTS))]
    other_names = header_names if perturbed == "other headers" or everything else other_header_names
    return RequestPlan(
        body=body,
        transport=transport,
        signature_parts=parts,
        signature_header_names=names,
        separator=separator,
        other_headers=draw(st.dictionaries(other_names, header_values, max_size=6)),
        shape=draw(st.sampled_from(["not a dict", "headers not a dict", "no request context", "flag not a bool"]))
        if perturbed == "shape" or everything
        else "http api",
        flag_value=draw(st.sampled_from(["true", 1, [], None])),
        perturbed=perturbed,
    )


@dataclass
class BuiltRequest:
    """An invocation event, the bytes its signature covers, and whether it is correctly signed."""

    event: Any
    raw_body: bytes
    correctly_signed: bool


def decodes(raw: bytes, errors: str = "strict") -> bool:
    """Return whether ``raw`` is UTF-8 (with ``surrogatepass``, also when it encodes lone surrogates)."""
    try:
        raw.decode("utf-8", errors)
    except UnicodeDecodeError:
        return False
    return True


def build_request(plan: RequestPlan, secret: str, now: int) -> BuiltRequest:
    """Apply the secret and the clock to a plan and return the invocation event."""
    raw = plan.body
    text = raw.decode("utf-8") if decodes(raw) else raw.decode("latin-1")
    is_base64 = plan.transport in ("base64", "invalid base64", "text flagged base64")
    body: Any = {
        "text": text,
        "base64": base64.b64encode(raw).decode("ascii"),
        "invalid base64": text + "=*",
        "text flagged base64": text,
        "no body": None,
        "non-string body": list(raw[:5]),
    }[plan.transport]

    # The bytes the function checks the signature against, when it gets that far.
    if isinstance(body, str) and is_base64:
        try:
            signed_bytes = base64.b64decode(body.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            signed_bytes = body.encode("utf-8", "surrogatepass")
    elif isinstance(body, str):
        signed_bytes = body.encode("utf-8", "surrogatepass")
    else:
        signed_bytes = b""

    headers: dict[str, Any] = dict(plan.other_headers)
    correctly_signed = False
    if plan.signature_parts is not None:
        times = {"<now>": str(now), "<old>": str(now - TOLERANCE_SECONDS - 60), "<future>": str(now + TOLERANCE_SECONDS + 60)}
        rendered = [(part.key, times.get(part.value, part.value)) for part in plan.signature_parts]
        first_t = next((value for key, value in rendered if key == "t"), str(now))
        signing_t = first_t if re.fullmatch("[0-9]{1,12}", first_t) else str(now)
        valid = hmac.new(secret.encode(), signing_t.encode() + b"." + signed_bytes, hashlib.sha256).hexdigest()
        header_value = plan.separator.join(f"{key}={valid if value == '<valid>' else value}" for key, value in rendered)
        for name in plan.signature_header_names:
            headers[name] = header_value
        # A t in the future passes; only a t older than the tolerance is rejected.
        fresh = int(signing_t) >= now - TOLERANCE_SECONDS
        correctly_signed = any(value == "<valid>" for _, value in rendered) and fresh

    event: Any = {
        "version": "2.0",
        "routeKey": "POST /webhooks/payments",
        "rawPath": "/webhooks/payments",
        "headers": headers,
        "requestContext": {"requestId": "fuzz-request", "http": {"method": "POST", "path": "/webhooks/payments"}},
        "body": body,
        "isBase64Encoded": is_base64,
    }
    if plan.shape == "not a dict":
        event = [event]
    elif plan.shape == "headers not a dict":
        event["headers"] = list(headers.items())
    elif plan.shape == "no request context":
        del event["requestContext"]
    elif plan.shape == "flag not a bool":
        event["isBase64Encoded"] = plan.flag_value
    return BuiltRequest(event, signed_bytes, correctly_signed)


# --- checks ---------------------------------------------------------------------------


@dataclass
class FuzzStats:
    """What the examples of one test did, for the figures."""

    examples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    rows_stored: int = 0
    rows_verified: int = 0
    rows_for_rejections: int = 0


@dataclass(frozen=True)
class Invocation:
    """The handler's answer to one example, whether the event's row existed before it, and its skip warnings."""

    status: int
    answer: dict[str, Any]
    existed_before: bool
    payment_skipped: tuple[dict[str, Any], ...] = ()


class FuzzHarness:
    """Invokes the handler and checks the response and the table around each example."""

    def __init__(self, webhook_env: WebhookEnvironment, captured_logs: Any) -> None:
        self.env = webhook_env
        self.logs = captured_logs
        self.stats = FuzzStats()

    def count_rows(self) -> int:
        return int(self.env.query("SELECT count(*) FROM webhook_events")[0][0])

    def stored_row(self, event_id: Any) -> list[Any] | None:
        """Return (payload text, type, livemode, created) of ``event_id``; None when absent or when no row can have that id."""
        if not isinstance(event_id, str) or not 1 <= len(event_id) <= 255 or "\x00" in event_id:
            return None
        if re.search("[\ud800-\udfff]", event_id):
            return None
        rows = self.env.query(
            "SELECT payload::text, event_type, livemode, CAST(extract(epoch FROM event_created_at) AS bigint) "
            "FROM webhook_events WHERE event_id = :id",
            id=event_id,
        )
        return rows[0] if rows else None

    def invoke(self, event: Any, candidate_id: Any) -> Invocation:
        """Invoke the handler and check what every response must satisfy, whatever the input."""
        existed_before = self.stored_row(candidate_id) is not None
        rows_before = self.count_rows()
        log_position = len(self.logs.text())

        response = lambda_handler(event, FakeLambdaContext())

        rows_after = self.count_rows()
        # Not splitlines(): a log line may contain U+0085 or U+2028 inside a JSON string.
        new_records = [json.loads(line) for line in self.logs.text()[log_position:].split("\n") if line.strip()]
        self.stats.examples += 1
        assert isinstance(response, dict)
        status = response["statusCode"]
        self.stats.statuses[str(status)] += 1
        assert status in (200, 400, 413), f"status {status}, body {response.get('body')!r}"
        assert response["headers"]["content-type"] == "application/json"
        answer = json.loads(response["body"])
        assert isinstance(answer, dict)
        assert [record for record in new_records if record.get("level") in ("ERROR", "CRITICAL")] == []
        check_answer_shape(status, answer)
        if status == 200 and answer["status"] == "stored":
            assert rows_after == rows_before + 1
            assert not existed_before
            self.stats.rows_stored += 1
        else:
            self.stats.rows_for_rejections += rows_after - rows_before
            assert rows_after == rows_before, f"a {status} {answer} answer changed the row count"
        if status == 200 and answer["status"] == "duplicate":
            assert existed_before
        skipped = tuple(record for record in new_records if record.get("message") == "payment update skipped")
        return Invocation(status, answer, existed_before, skipped)

    def deliver_signed(
        self,
        hostile: HostileBody,
        *,
        as_base64: bool = False,
        header_name: str = "Stripe-Signature",
        extra_elements: tuple[str, ...] = (),
        other_headers: dict[str, str] | None = None,
    ) -> None:
        """Deliver ``hostile`` validly signed and check the response and the row against its verdict."""
        raw = hostile.render()
        # API Gateway passes a body that is not UTF-8 base64-encoded.
        as_base64 = as_base64 or not decodes(raw, "surrogatepass")
        now = int(time.time())
        v1 = hmac.new(self.env.signing_secret.encode(), str(now).encode() + b"." + raw, hashlib.sha256).hexdigest()
        event = {
            "version": "2.0",
            "routeKey": "POST /webhooks/payments",
            "headers": {**(other_headers or {}), header_name: ",".join([f"t={now}", *extra_elements, f"v1={v1}"])},
            "requestContext": {"requestId": "fuzz-signed"},
            "body": base64.b64encode(raw).decode("ascii") if as_base64 else raw.decode("utf-8", "surrogatepass"),
            "isBase64Encoded": as_base64,
        }
        verdict = "too large" if len(raw) > MAX_BODY_BYTES else hostile.verdict.value
        self.stats.verdicts[verdict] += 1
        if currently_in_test_context():
            note(f"{hostile.description}: verdict {verdict}, {len(raw):,} bytes, base64 {as_base64}")

        result = self.invoke(event, candidate_event_id(raw))

        context = f"{hostile.description}: got {result.status} {result.answer}"
        if verdict == "too large":
            assert result.status == 413, context
            return
        if hostile.verdict in (Verdict.STORE, Verdict.STORE_WITHOUT_PAYMENT):
            assert result.status == 200, context
        if hostile.verdict is Verdict.REJECT:
            assert result.status == 400, context
        if result.status == 400:
            assert result.answer["error"] == "invalid_event", context
            if hostile.field_name is not None:
                assert names_field(result.answer["message"], hostile.field_name), context
            return
        self.check_stored(hostile, raw, result)

    def check_stored(self, hostile: HostileBody, raw: bytes, result: Invocation) -> None:
        """Check that an accepted event's row contains exactly what was sent, and its payment update."""
        sent = parse_exact(raw.decode("utf-8"))
        assert result.answer["event_id"] == sent["id"]
        assert result.answer["status"] == ("duplicate" if result.existed_before else "stored")
        if result.answer["status"] == "duplicate":
            return
        row = self.stored_row(sent["id"])
        assert row is not None
        payload, event_type, livemode, created = row
        assert parse_exact(payload) == sent, hostile.description
        assert event_type == sent["type"]
        assert livemode == sent.get("livemode")
        assert created == sent["created"]
        self.stats.rows_verified += 1
        if hostile.verdict is Verdict.STORE_WITHOUT_PAYMENT:
            context = f"{hostile.description}: skip warnings {result.payment_skipped}"
            assert self.env.payment(str(hostile.payment_intent_id)) is None, context
            assert len(result.payment_skipped) == 1, context
            assert str(result.payment_skipped[0].get("field")).startswith(str(hostile.field_name)), context
        if hostile.expected_payment is not None:
            payment = self.env.payment(str(hostile.payment_intent_id))
            assert payment is not None, "the event row was stored without its payments row"
            assert {name: payment[name] for name in hostile.expected_payment} == hostile.expected_payment
            assert payment["last_event_id"] == sent["id"]


def check_answer_shape(status: int, answer: dict[str, Any]) -> None:
    """Assert the body has exactly the keys the webhook contract gives for ``status``."""
    if status == 200:
        assert set(answer) == {"status", "event_id"}
        assert answer["status"] in ("stored", "duplicate")
        assert isinstance(answer["event_id"], str)
    elif status == 413:
        assert answer == {"error": "payload_too_large"}
    else:
        assert answer.get("error") in REJECTION_CODES
        if answer["error"] == "invalid_event":
            assert set(answer) == {"error", "message"}
            assert isinstance(answer["message"], str)
            assert answer["message"]
        else:
            assert set(answer) == {"error"}


def names_field(message: str, field_name: str) -> bool:
    """Return whether ``message`` names ``field_name`` as a whole path."""
    return re.search(rf"(^|[\s\[]){re.escape(field_name)}($|[\s.\[\]])", message) is not None


def candidate_event_id(raw: bytes) -> Any:
    """Return the ``id`` the function would store ``raw`` under, when it parses as a JSON object."""
    try:
        document = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_int=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document.get("id") if isinstance(document, dict) else None


@pytest.fixture
def fuzz_harness(webhook_env: WebhookEnvironment, captured_logs: Any) -> FuzzHarness:
    """Return a harness bound to a fresh migrated database and the function's captured logs."""
    return FuzzHarness(webhook_env, captured_logs)


def record_stats(request: pytest.FixtureRequest, scenario: str, stats: FuzzStats, *, passed: bool) -> None:
    record_figures(
        request.config,
        scenario,
        {
            "examples": stats.examples,
            "statuses": dict(stats.statuses),
            "verdicts": dict(stats.verdicts),
            "deliveries_tried": stats.examples,
            "faults_injected": 0,
            "rows_stored": stats.rows_stored,
            "rows_compared_with_sent_json": stats.rows_verified,
            "rows_for_rejected_requests": stats.rows_for_rejections,
            "max_examples_setting": FUZZ_EXAMPLES,
        },
        passed=passed,
    )


def test_arbitrary_requests_never_500(fuzz_harness: FuzzHarness, request: pytest.FixtureRequest) -> None:
    """Random invocation events get 200, 400 or 413 with the contract's body, and only signed requests get 200."""
    secret = fuzz_harness.env.signing_secret

    @FUZZ_SETTINGS
    @given(plan=request_plans())
    def run(plan: RequestPlan) -> None:
        built = build_request(plan, secret, int(time.time()))
        note(f"perturbed {plan.perturbed}, transport {plan.transport}, correctly signed {built.correctly_signed}")
        result = fuzz_harness.invoke(built.event, candidate_event_id(built.raw_body))
        if plan.perturbed == "none":
            assert result.answer == {"status": "stored", "event_id": candidate_event_id(built.raw_body)}
        if result.status == 200:
            assert built.correctly_signed, "a request without a correct v1 for a fresh t was accepted"
        if result.status == 200 and result.answer["status"] == "stored":
            row = fuzz_harness.stored_row(result.answer["event_id"])
            assert row is not None
            assert parse_exact(row[0]) == parse_exact(built.raw_body.decode("utf-8"))
            fuzz_harness.stats.rows_verified += 1

    passed = False
    try:
        run()
        passed = True
    finally:
        record_stats(request, "fuzz_arbitrary_requests", fuzz_harness.stats, passed=passed)


def test_signed_hostile_events_rejected_or_stored(fuzz_harness: FuzzHarness, request: pytest.FixtureRequest) -> None:
    """Validly signed hostile events are stored exactly as sent, or rejected with invalid_event naming the field."""

    @FUZZ_SETTINGS
    @given(
        hostile=hostile_bodies,
        as_base64=st.booleans(),
        header_name=st.sampled_from(SIGNATURE_NAME_VARIANTS),
        extra_elements=st.lists(st.sampled_from(["v0=" + "ab" * 32, "v1=" + "cd" * 32, "v2=x", "scheme=other"]), max_size=3),
        other_headers=st.dictionaries(other_header_names, st.text(max_size=30), max_size=4),
    )
    def run(
        hostile: HostileBody, as_base64: bool, header_name: str, extra_elements: list[str], other_headers: dict[str, str]
    ) -> None:
        fuzz_harness.deliver_signed(
            hostile,
            as_base64=as_base64,
            header_name=header_name,
            extra_elements=tuple(extra_elements),
            other_headers=other_headers,
        )

    passed = False
    try:
        run()
        passed = True
    finally:
        record_stats(request, "fuzz_signed_hostile_events", fuzz_harness.stats, passed=passed)


def test_signed_hostile_catalogue(fuzz_harness: FuzzHarness, request: pytest.FixtureRequest) -> None:
    """Every listed hostile value, validly signed as text and as base64, is stored exactly or rejected naming its field."""
    failures: list[str] = []
    for hostile in catalogue():
        for as_base64 in (False, True):
            try:
                fuzz_harness.deliver_signed(hostile, as_base64=as_base64)
            except AssertionError as exc:
                failures.append(f"{hostile.description} (base64 {as_base64}): {str(exc).splitlines()[0][:300]}")
    record_stats(request, "fuzz_signed_catalogue", fuzz_harness.stats, passed=not failures)
    assert failures == []
