"""Replay of captured requests: a duplicate within the signature tolerance, a 400 after it.

Each request is captured as it is sent (the body and its Stripe-Signature header) with a
timestamp ``CAPTURE_MARGIN_SECONDS`` short of the tolerance, as if it had been signed that
long ago. It is delivered, then replayed byte for byte at once (still within the
tolerance), then replayed again once the tolerance has passed. A replay with a changed
body under the captured header stands for an attacker who cannot sign.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from local_stack.signing import signature_header
from local_stack.stack import SIGNATURE_TOLERANCE_SECONDS
from tests.reliability.harness import StackUnderTest
from tests.reliability.sender import Attempt, post_raw
from tests.reliability.workload import build_workload, read_stored_state

pytestmark = pytest.mark.slow

CAPTURED_REQUESTS = 40
# Seconds between a request's capture and the end of its tolerance window. Every original
# delivery and its first replay must reach the function within this time.
CAPTURE_MARGIN_SECONDS = 4


@dataclass(frozen=True)
class CapturedRequest:
    """A delivery exactly as it went over the wire."""

    event_id: str
    body: bytes
    signature: str
    timestamp: int


def answer_of(attempt: Attempt) -> str:
    """Return the ``status`` or ``error`` field of a response, for counting."""
    body = attempt.body or {}
    return str(body.get("status") or body.get("error") or f"HTTP {attempt.status} without JSON")


def test_replay_within_and_after_tolerance(
    stack: StackUnderTest, record: Callable[[str, dict[str, Any]], None]
) -> None:
    """A replay within the tolerance is a duplicate with no new row; after it, a 400."""
    workload = build_workload(CAPTURED_REQUESTS, seed=3, name="replay")
    captured: list[CapturedRequest] = []
    originals: Counter[str] = Counter()
    early_replays: Counter[str] = Counter()
    tampered_replays: Counter[str] = Counter()
    late_replays: Counter[str] = Counter()

    for event in workload.events:
        timestamp = int(time.time()) - SIGNATURE_TOLERANCE_SECONDS + CAPTURE_MARGIN_SECONDS
        request = CapturedRequest(
            event.event_id, event.body, signature_header(event.body, stack.signing_secret, timestamp), timestamp
        )
        captured.append(request)
        originals[answer_of(post_raw(stack.url, request.body, request.signature))] += 1
        early_replays[answer_of(post_raw(stack.url, request.body, request.signature))] += 1
        tampered = request.body.replace(request.event_id.encode(), (request.event_id + "_forged").encode())
        tampered_replays[answer_of(post_raw(stack.url, tampered, request.signature))] += 1
    with stack.admin_connection() as connection:
        rows_before_late_replays = read_stored_state(connection, workload)

    # Sleep until the newest captured timestamp is more than the tolerance in the past.
    time.sleep(max(0.0, captured[-1].timestamp + SIGNATURE_TOLERANCE_SECONDS + 1 - time.time()))
    for request in captured:
        late_replays[answer_of(post_raw(stack.url, request.body, request.signature))] += 1

    with stack.admin_connection() as connection:
        state = read_stored_state(connection, workload)
    record(
        "replay",
        {
            "captured_requests": CAPTURED_REQUESTS,
            "deliveries_tried": CAPTURED_REQUESTS * 4,
            "faults_injected": CAPTURED_REQUESTS * 3,
            "fault_description": "each captured request replayed within the tolerance, with a changed body, "
            "and after the tolerance",
            "originals": dict(originals),
            "replays_within_tolerance": dict(early_replays),
            "replays_with_changed_body": dict(tampered_replays),
            "replays_after_tolerance": dict(late_replays),
            "rows_lost": len(state.lost(workload)),
            "rows_doubled": len(state.doubled()),
            "rows_for_forged_ids": len(state.unexpected_event_ids),
        },
    )

    assert originals == Counter({"stored": CAPTURED_REQUESTS})
    assert early_replays == Counter({"duplicate": CAPTURED_REQUESTS})
    assert tampered_replays == Counter({"invalid_signature": CAPTURED_REQUESTS})
    assert late_replays == Counter({"timestamp_outside_tolerance": CAPTURED_REQUESTS})
    assert rows_before_late_replays.rows_per_event == state.rows_per_event
    assert state.lost(workload) == []
    assert state.doubled() == []
    assert state.unexpected_event_ids == []
    assert state.payment_mismatches == {}
