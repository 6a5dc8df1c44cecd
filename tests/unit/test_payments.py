"""Lifecycle ranks of payment intent statuses, and payment updates skipped for unusable fields."""

from __future__ import annotations

from typing import Any

import pytest

from payment_webhook.logic.payments import payment_update_for, status_rank
from payment_webhook.models.event import PaymentIntentUpdate, RefundUpdate, SkippedPaymentUpdate

LIFECYCLE = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "succeeded",
]

# Marks a field that the data object leaves out.
MISSING = object()


def payment_intent(**changes: Any) -> dict[str, Any]:
    data_object: dict[str, Any] = {
        "id": "pi_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 2000,
        "currency": "eur",
        "customer": "cus_1",
    }
    data_object.update(changes)
    return {key: value for key, value in data_object.items() if value is not MISSING}


def test_status_rank_follows_lifecycle() -> None:
    """Each status ranks above the one before it in the lifecycle."""
    ranks = [status_rank(status) for status in LIFECYCLE]
    assert ranks == sorted(set(ranks))


def test_final_states_share_top_rank() -> None:
    """canceled and succeeded are both final and rank equal."""
    assert status_rank("canceled") == status_rank("succeeded")


def test_unknown_status_has_no_rank() -> None:
    """A status the table does not know has no rank."""
    assert status_rank("some_new_status") is None


def test_expanded_customer_object_uses_its_id() -> None:
    """An expanded customer object gives its id to the payment update."""
    data_object = payment_intent(customer={"id": "cus_9", "object": "customer"})
    update = payment_update_for("payment_intent.succeeded", data_object)
    assert isinstance(update, PaymentIntentUpdate)
    assert update.customer == "cus_9"


@pytest.mark.parametrize("currency", ["usdd", "eu", "€ur", "c" * 255])
def test_any_currency_text_accepted(currency: str) -> None:
    """Any non-empty currency of at most 255 characters is used, lower-cased."""
    update = payment_update_for("payment_intent.succeeded", payment_intent(currency=currency))
    assert isinstance(update, PaymentIntentUpdate)
    assert update.currency == currency.lower()


def test_expanded_payment_intent_of_refund_uses_its_id() -> None:
    """charge.refunded with an expanded payment_intent object uses the object's id."""
    charge = {"id": "ch_1", "payment_intent": {"id": "pi_7", "object": "payment_intent"}, "amount_refunded": 300}
    assert payment_update_for("charge.refunded", charge) == RefundUpdate("pi_7", 300)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"id": MISSING}, "data.object.id", "data.object.id is missing"),
        ({"id": 5}, "data.object.id", "data.object.id must be a string"),
        ({"status": MISSING}, "data.object.status", "data.object.status is missing"),
        ({"status": "requires_reauthorization"}, "data.object.status", "is not a payment intent status"),
        ({"amount": "2000"}, "data.object.amount", "data.object.amount must be an integer"),
        ({"amount": True}, "data.object.amount", "data.object.amount must be an integer"),
        ({"amount": -1}, "data.object.amount", "data.object.amount must be between 0 and 9223372036854775807"),
        ({"amount": 2**63}, "data.object.amount", "data.object.amount must be between 0 and 9223372036854775807"),
        ({"currency": 978}, "data.object.currency", "data.object.currency must be a string"),
        ({"currency": ""}, "data.object.currency", "data.object.currency must be 1 to 255 characters long"),
        ({"currency": "c" * 256}, "data.object.currency", "data.object.currency must be 1 to 255 characters long"),
        ({"customer": 42}, "data.object.customer", "data.object.customer must be a string"),
        ({"customer": {"object": "customer"}}, "data.object.customer.id", "data.object.customer.id is missing"),
    ],
)
def test_unusable_payment_intent_field_skipped(changes: dict[str, Any], field: str, problem: str) -> None:
    """An unusable payment field gives a skipped update that names the field."""
    update = payment_update_for("payment_intent.succeeded", payment_intent(**changes))
    assert isinstance(update, SkippedPaymentUpdate)
    assert update.field == field
    assert problem in update.problem


@pytest.mark.parametrize(
    ("charge", "field"),
    [
        ({"payment_intent": "pi_1", "amount_refunded": -5}, "data.object.amount_refunded"),
        ({"payment_intent": "pi_1"}, "data.object.amount_refunded"),
        ({"payment_intent": 5, "amount_refunded": 5}, "data.object.payment_intent"),
        ({"payment_intent": {"id": 5}, "amount_refunded": 5}, "data.object.payment_intent.id"),
    ],
)
def test_unusable_refund_field_skipped(charge: dict[str, Any], field: str) -> None:
    """An unusable charge.refunded field gives a skipped update that names the field."""
    update = payment_update_for("charge.refunded", {"id": "ch_1", **charge})
    assert isinstance(update, SkippedPaymentUpdate)
    assert update.field == field


def test_skipped_update_never_contains_value() -> None:
    """The problem text names the field and leaves out the value."""
    update = payment_update_for("payment_intent.succeeded", payment_intent(customer=["jenny.rosen@example.com"]))
    assert isinstance(update, SkippedPaymentUpdate)
    assert "jenny.rosen" not in update.problem
