"""Outcome of a delivery that passed every check."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payment_webhook.models.event import WebhookEvent


class StoreOutcome(StrEnum):
    """Whether the event row was new; the value is the ``status`` of the 200 response."""

    STORED = "stored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoreResult:
    """The outcome of the storing statement.

    ``payment_changed`` is true when the statement inserted or changed a ``payments`` row.
    """

    outcome: StoreOutcome
    payment_changed: bool


@dataclass(frozen=True)
class DeliveryResult:
    """A delivery that was verified, validated and stored (or found already stored)."""

    event: WebhookEvent
    store_result: StoreResult
