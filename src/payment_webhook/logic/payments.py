"""Payment updates implied by events, and the lifecycle order of payment intent statuses.

A payment row never moves backwards. The statement in ``dal.events`` applies a
``payment_intent.*`` update only when its ``(created, rank)`` is greater than the stored
one: a newer second always wins, and within the same second the status later in the
lifecycle wins.

The payment fields are not part of the webhook contract, so they never make an event
invalid. When a field the ``payments`` table needs cannot be used, the event is still
stored and ``payment_update_for`` returns a ``SkippedPaymentUpdate`` naming the field.

NOTE: a skipped update leaves the payment row as it was, so its ``created`` time does not
count. An older event with usable fields that arrives later still changes the payment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payment_webhook.errors import InvalidEvent
from payment_webhook.logic.fields import BIGINT_MAX, optional_string, require_integer, require_string
from payment_webhook.models.event import PaymentIntentUpdate, PaymentUpdate, RefundUpdate, SkippedPaymentUpdate

PAYMENT_INTENT_EVENT_PREFIX = "payment_intent."
CHARGE_REFUNDED = "charge.refunded"
MAX_CURRENCY_CHARS = 255

# Lifecycle order of Stripe's PaymentIntent statuses. The two final states share the top
# rank, so between them the first one stored stays. An event with a status missing here
# is stored without a payment update, because its place in the order is unknown.
PAYMENT_INTENT_STATUS_RANK: dict[str, int] = {
    "requires_payment_method": 1,
    "requires_confirmation": 2,
    "requires_action": 3,
    "processing": 4,
    "requires_capture": 5,
    "canceled": 6,
    "succeeded": 6,
}
# NOTE: a failed attempt moves a payment intent from processing back to
# requires_payment_method. When both events carry the same created second, the ranks above
# keep "processing"; the next event of a later second corrects the row.


class _UnusableField(Exception):
    """A field the payment update needs is missing or invalid; ``problem`` names it, never its value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def status_rank(status: str) -> int | None:
    """Return the lifecycle rank of a payment intent status, or None when the status is unknown."""
    return PAYMENT_INTENT_STATUS_RANK.get(status)


def payment_update_for(event_type: str, data_object: dict[str, Any]) -> PaymentUpdate | SkippedPaymentUpdate | None:
    """Return the payment update that an event implies.

    Parameters
    ----------
    event_type:
        The event's ``type``.
    data_object:
        The event's ``data.object``.

    Returns
    -------
    PaymentUpdate | SkippedPaymentUpdate | None
        A ``PaymentIntentUpdate`` for ``payment_intent.*``, a ``RefundUpdate`` for
        ``charge.refunded`` on a charge with a payment intent, a ``SkippedPaymentUpdate``
        when such an event has a field that cannot be used, None otherwise.
    """
    try:
        if event_type.startswith(PAYMENT_INTENT_EVENT_PREFIX):
            return _payment_intent_update(data_object)
        if event_type == CHARGE_REFUNDED:
            return _refund_update(data_object)
    except _UnusableField as exc:
        return SkippedPaymentUpdate(field=exc.field, problem=exc.problem)
    return None


def _payment_intent_update(data_object: dict[str, Any]) -> PaymentIntentUpdate:
    payment_intent_id = _read(require_string, data_object, "id", "data.object.id")
    status = _read(require_string, data_object, "status", "data.object.status")
    rank = status_rank(status)
    if rank is None:
        raise _UnusableField(
            "data.object.status", "data.object.status is not a payment intent status this function ranks"
        )
    amount = _read(require_integer, data_object, "amount", "data.object.amount", minimum=0, maximum=BIGINT_MAX)
    currency = _read(require_string, data_object, "currency", "data.object.currency", max_chars=MAX_CURRENCY_CHARS)
    return PaymentIntentUpdate(
        payment_intent_id=payment_intent_id,
        status=status,
        status_rank=rank,
        amount=amount,
        currency=currency.lower(),
        customer=_expandable_id(data_object, "customer"),
    )


def _refund_update(data_object: dict[str, Any]) -> RefundUpdate | None:
    payment_intent_id = _expandable_id(data_object, "payment_intent")
    if payment_intent_id is None:
        # A charge made without a payment intent (the older Charges API) has no payments row.
        return None
    amount_refunded = _read(
        require_integer, data_object, "amount_refunded", "data.object.amount_refunded", minimum=0, maximum=BIGINT_MAX
    )
    return RefundUpdate(payment_intent_id=payment_intent_id, amount_refunded=amount_refunded)


def _expandable_id(data_object: dict[str, Any], key: str) -> str | None:
    """Return the id in ``data_object[key]``: a string id, null, or an expanded object with a string ``id``."""
    value = data_object.get(key)
    if isinstance(value, dict):
        return _read(require_string, value, "id", f"data.object.{key}.id")
    return _read(optional_string, data_object, key, f"data.object.{key}")


def _read[T](reader: Callable[..., T], container: dict[str, Any], key: str, path: str, **limits: Any) -> T:
    try:
        return reader(container, key, path, **limits)
    except InvalidEvent as exc:
        raise _UnusableField(path, exc.message) from None
