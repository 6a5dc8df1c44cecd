"""A parsed Stripe-Signature header."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SignatureHeader:
    """The ``t`` timestamp and every ``v1`` signature of a Stripe-Signature header.

    ``v1_signatures`` keep the sender's text, so they are left out of ``repr`` and never
    logged.
    """

    timestamp: int
    v1_signatures: tuple[str, ...] = field(repr=False)
