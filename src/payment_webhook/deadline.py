"""The time left in an invocation, shared by every network call it makes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from payment_webhook.errors import DeadlineExceeded

# Used when the caller passes no Lambda context (scripts, the local stack): the
# webhook function's timeout.
DEFAULT_BUDGET_SECONDS = 10.0
# Kept free at the end of the invocation to build and return the response.
RESPONSE_RESERVE_SECONDS = 0.5
# Below this, a new connection or request has no realistic chance to finish.
MIN_CALL_SECONDS = 0.05


@dataclass(frozen=True)
class Deadline:
    """A point on the ``time.monotonic()`` clock after which no new network call starts."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """Return a deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_lambda_context(cls, context: Any, reserve_seconds: float = RESPONSE_RESERVE_SECONDS) -> Deadline:
        """Return the invocation's deadline minus ``reserve_seconds``.

        The time left comes from ``context.get_remaining_time_in_millis()``; without a
        usable context the budget is ``DEFAULT_BUDGET_SECONDS``.
        """
        remaining_seconds = DEFAULT_BUDGET_SECONDS
        get_remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(get_remaining):
            try:
                remaining_seconds = float(get_remaining()) / 1000.0
            except (TypeError, ValueError):
                remaining_seconds = DEFAULT_BUDGET_SECONDS
        return cls.after(remaining_seconds - reserve_seconds)

    def remaining(self) -> float:
        """Return the seconds left, 0 when the deadline has passed."""
        return max(0.0, self.expires_at - time.monotonic())

    def timeout(self, limit: float, operation: str) -> float:
        """Return the timeout for the next call: ``limit`` or the time left, whichever is shorter.

        Raises
        ------
        DeadlineExceeded
            Less than ``MIN_CALL_SECONDS`` is left; ``operation`` names the call in the message.
        """
        remaining = self.remaining()
        if remaining < MIN_CALL_SECONDS:
            raise DeadlineExceeded(f"{operation} not started: the invocation's time is used up")
        return min(limit, remaining)
