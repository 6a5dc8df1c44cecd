"""A verified, validated webhook event and the payment update it implies."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PaymentIntentUpdate:
    """The state of a payment intent that a ``payment_intent.*`` event carries.

    ``status_rank`` orders statuses within one ``created`` second (see
    ``logic.payments.PAYMENT_INTENT_STATUS_RANK``).
    """

    payment_intent_id: str
    status: str
    status_rank: int
    amount: int
    currency: str
    customer: str | None = field(repr=False)


@dataclass(frozen=True)
class RefundUpdate:
    """The total refunded on a payment intent, as a ``charge.refunded`` event reports it."""

    payment_intent_id: str
    amount_refunded: int


@dataclass(frozen=True)
class SkippedPaymentUpdate:
    """A payment update that an event implies but cannot carry, because a field is unusable.

    The event is still stored. ``field`` is the path of the first unusable field, and
    ``problem`` describes what is wrong with it. Neither contains the field's value.
    """

    field: str
    problem: str


PaymentUpdate = PaymentIntentUpdate | RefundUpdate


@dataclass(frozen=True)
class WebhookEvent:
    """An event whose signature was verified and whose fields were validated.

    ``payload_text`` is the verified body decoded as UTF-8, stored as jsonb without being
    serialised again. It is left out of ``repr`` so the payload never reaches a log.
    """

    event_id: str
    event_type: str
    created: int
    livemode: bool | None
    payload_text: str = field(repr=False)
    payment_update: PaymentUpdate | SkippedPaymentUpdate | None = None
