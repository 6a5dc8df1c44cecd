"""Load over HTTP: 16 concurrent senders, 2,000 deliveries of which a quarter are duplicates.

Half of the duplicates follow their original directly in the shared queue, so two
senders usually deliver the same event at the same moment. The other half come later, as
a provider's retry would. Nothing is broken on purpose: every delivery must be accepted on
its first attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.harness import StackUnderTest
from tests.reliability.sender import RetryPolicy, send_concurrently
from tests.reliability.workload import WorkloadEvent, build_workload, read_stored_state

pytestmark = pytest.mark.slow

DELIVERIES = 2_000
DUPLICATE_SHARE = 0.25
SENDERS = 16
SEED = 1_048_576


def with_duplicates(events: list[WorkloadEvent], duplicates: int, rng: random.Random) -> list[WorkloadEvent]:
    """Return ``events`` with ``duplicates`` extra deliveries: half right after the original, half later."""
    chosen = rng.sample(range(len(events)), duplicates)
    adjacent = set(chosen[: duplicates // 2])
    later = chosen[duplicates // 2 :]
    deliveries: list[WorkloadEvent] = []
    for index, event in enumerate(events):
        deliveries.append(event)
        if index in adjacent:
            deliveries.append(event)
    for index in later:
        original_position = deliveries.index(events[index])
        deliveries.insert(rng.randrange(original_position + 1, len(deliveries) + 1), events[index])
    return deliveries


def test_load_duplicates_one_row_each(stack: StackUnderTest, record: Callable[[str, dict[str, Any]], None]) -> None:
    """2,000 deliveries from 16 senders: no 5xx, exactly one row and one ``stored`` response per event."""
    duplicates = int(DELIVERIES * DUPLICATE_SHARE)
    unique = DELIVERIES - duplicates
    workload = build_workload(unique, seed=SEED, name="load")
    deliveries = with_duplicates(workload.events, duplicates, random.Random(SEED))
    workers_before = stack.worker_pids()

    report = send_concurrently(
        stack.url, deliveries, stack.signing_secret, senders=SENDERS, policy=RetryPolicy(retry=False)
    )

    with stack.admin_connection() as connection:
        state = read_stored_state(connection, workload)
    statuses = report.statuses()
    answers = report.answers()
    stored_answers = report.stored_answers_per_event()
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    record(
        "load",
        {
            "deliveries_tried": report.attempts,
            "distinct_events": unique,
            "duplicate_deliveries": duplicates,
            "senders": SENDERS,
            "function_workers": stack.workers,
            "faults_injected": 0,
            "statuses": {str(status): count for status, count in sorted(statuses.items())},
            "answers": dict(answers),
            "server_errors": server_errors,
            "rows_lost": len(state.lost(workload)),
            "rows_doubled": len(state.doubled()),
            "events_answered_stored_twice": sum(1 for count in stored_answers.values() if count > 1),
            "partial_payment_rows": len(state.payment_mismatches),
            "elapsed_seconds": round(report.elapsed_seconds, 1),
            "function_code": stack.code_description(),
        },
    )

    assert len(deliveries) == DELIVERIES
    assert server_errors == 0
    assert statuses == {200: DELIVERIES}
    assert answers == {"stored": unique, "duplicate": duplicates}
    assert all(count == 1 for count in stored_answers.values())
    assert state.lost(workload) == []
    assert state.doubled() == []
    assert state.unexpected_event_ids == []
    assert state.payment_mismatches == {}
    assert stack.internal_errors() == []
    assert stack.worker_pids() == workers_before
