"""Payment updates implied by events, and the lifecycle order of payment intent statuses.

A payment row never moves backwards. The statement in ``dal.events`` applies a
``payment_intent.*`` update only when its ``(created, rank)`` is greater than the stored
one: a newer second always wins, and within the same second the status later in the
lifecycle wins.
"""

from __future__ import annotations

import re
from typing import Any

from payment_webhook.errors import InvalidEvent
from payment_webhook.logic.fields import BIGINT_MAX, optional_string, require_integer, require_string
from payment_webhook.models.event import PaymentIntentUpdate, PaymentUpdate, RefundUpdate

PAYMENT_INTENT_EVENT_PREFIX = "payment_intent."
CHARGE_REFUNDED = "charge.refunded"

# Lifecycle order of Stripe's PaymentIntent statuses. The two final states share the top
# rank, so between them the first one stored stays.
PAYMENT_INTENT_STATUS_RANK: dict[str, int] = {
    "requires_payment_method": 1,
    "requires_confirmation": 2,
    "requires_action": 3,
    "processing": 4,
    "requires_capture": 5,
    "canceled": 6,
    "succeeded": 6,
}
# A status Stripe adds later is stored, but within its second it loses to every known status.
UNKNOWN_STATUS_RANK = 0
# NOTE: a failed attempt moves a payment intent from processing back to
# requires_payment_method. When both events carry the same created second, the ranks above
# keep "processing"; the next event of a later second corrects the row.

_CURRENCY = re.compile(r"[A-Za-z]{3}")


def status_rank(status: str) -> int:
    """Return the lifecycle rank of a payment intent status (``UNKNOWN_STATUS_RANK`` when unknown)."""
    return PAYMENT_INTENT_STATUS_RANK.get(status, UNKNOWN_STATUS_RANK)


def payment_update_for(event_type: str, data_object: dict[str, Any], event_id: str) -> PaymentUpdate | None:
    """Return the payment update that an event implies, validating the fields it needs.

    Parameters
    ----------
    event_type:
        The event's ``type``.
    data_object:
        The event's ``data.object``.
    event_id:
        The event's id, attached to a rejection for the log.

    Returns
    -------
    PaymentUpdate | None
        A ``PaymentIntentUpdate`` for ``payment_intent.*``, a ``RefundUpdate`` for
        ``charge.refunded`` on a charge with a payment intent, None otherwise.

    Raises
    ------
    InvalidEvent
        A field that the ``payments`` table needs is missing or invalid; the message names it.
    """
    if event_type.startswith(PAYMENT_INTENT_EVENT_PREFIX):
        return _payment_intent_update(data_object, event_id)
    if event_type == CHARGE_REFUNDED:
        return _refund_update(data_object, event_id)
    return None


def _payment_intent_update(data_object: dict[str, Any], event_id: str) -> PaymentIntentUpdate:
    status = require_string(data_object, "status", "data.object.status", event_id=event_id)
    currency = require_string(data_object, "currency", "data.object.currency", event_id=event_id)
    if not _CURRENCY.fullmatch(currency):
        raise InvalidEvent("data.object.currency must be a three-letter ISO currency code", event_id=event_id)
    return PaymentIntentUpdate(
        payment_intent_id=require_string(data_object, "id", "data.object.id", event_id=event_id),
        status=status,
        status_rank=status_rank(status),
        amount=require_integer(
            data_object, "amount", "data.object.amount", minimum=0, maximum=BIGINT_MAX, event_id=event_id
        ),
        currency=currency.lower(),
        customer=optional_string(data_object, "customer", "data.object.customer", event_id=event_id),
    )


def _refund_update(data_object: dict[str, Any], event_id: str) -> RefundUpdate | None:
    amount_refunded = require_integer(
        data_object,
        "amount_refunded",
        "data.object.amount_refunded",
        minimum=0,
        maximum=BIGINT_MAX,
        event_id=event_id,
    )
    payment_intent_id = optional_string(data_object, "payment_intent", "data.object.payment_intent", event_id=event_id)
    if payment_intent_id is None:
        # A charge made without a payment intent (the older Charges API) has no payments row.
        return None
    return RefundUpdate(payment_intent_id=payment_intent_id, amount_refunded=amount_refunded)
