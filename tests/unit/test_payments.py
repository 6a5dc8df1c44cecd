"""Lifecycle ranks of payment intent statuses."""

from __future__ import annotations

from payment_webhook.logic.payments import UNKNOWN_STATUS_RANK, status_rank

LIFECYCLE = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "succeeded",
]


def test_status_rank_follows_lifecycle() -> None:
    """Each status ranks above the one before it in the lifecycle."""
    ranks = [status_rank(status) for status in LIFECYCLE]
    assert ranks == sorted(set(ranks))


def test_final_states_share_top_rank() -> None:
    """canceled and succeeded are both final and rank equal."""
    assert status_rank("canceled") == status_rank("succeeded")


def test_unknown_status_ranks_lowest() -> None:
    """A status the table does not know ranks below every known one."""
    assert status_rank("some_new_status") == UNKNOWN_STATUS_RANK
    assert status_rank("requires_payment_method") > UNKNOWN_STATUS_RANK
