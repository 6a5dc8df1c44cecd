"""Database outage during traffic: PostgreSQL stops twice while a retrying sender delivers 500 events.

The first outage is an immediate shutdown (as a crash: sessions cut, crash recovery on
start), the second a fast shutdown (as a failover or a maintenance restart: sessions get
an admin_shutdown error). Each lasts ``OUTAGE_SECONDS``. The same four warm workers serve
the whole run, so the function has to recover inside its execution environments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.harness import StackUnderTest
from tests.reliability.sender import RetryPolicy, send_concurrently
from tests.reliability.workload import build_workload, read_stored_state

pytestmark = pytest.mark.slow

EVENT_COUNT = 500
SENDERS = 4
# (accepted deliveries before the stop, pg_ctl shutdown mode)
OUTAGES = ((150, "immediate"), (350, "fast"))
OUTAGE_SECONDS = 3.0
WORKLOAD_SEED = 20241204


class OutageInjector:
    """Stops and restarts PostgreSQL when the sender reaches the given numbers of accepted deliveries."""

    def __init__(self, stack: StackUnderTest) -> None:
        self.stack = stack
        self.accepted = 0
        self.outages_done = 0
        self.errors: list[BaseException] = []
        self._changed = threading.Condition()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="outage-injector")

    def on_accepted(self, accepted: int) -> None:
        with self._changed:
            self.accepted = accepted
            self._changed.notify_all()

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        with self._changed:
            self._finished = True
            self._changed.notify_all()
        self._thread.join()

    def _run(self) -> None:
        try:
            for threshold, mode in OUTAGES:
                with self._changed:
                    self._changed.wait_for(lambda threshold=threshold: self.accepted >= threshold or self._finished)
                    if self._finished:
                        return
                self.stack.postgres.stop(mode=mode)
                time.sleep(OUTAGE_SECONDS)
                self.stack.postgres.start()
                self.outages_done += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.errors.append(exc)


def test_outage_every_event_stored_once(
    stack: StackUnderTest, record: Callable[[str, dict[str, Any]], None]
) -> None:
    """500 deliveries across two database outages end with every event stored once and no partial payment."""
    workload = build_workload(EVENT_COUNT, seed=WORKLOAD_SEED, name="outage")
    workers_before = stack.worker_pids()
    injector = OutageInjector(stack)

    injector.start()
    try:
        report = send_concurrently(
            stack.url,
            workload.events,
            stack.signing_secret,
            senders=SENDERS,
            policy=RetryPolicy(initial_backoff=0.05, max_backoff=0.5, give_up_after=60.0),
            on_accepted=injector.on_accepted,
        )
    finally:
        injector.finish()

    with stack.admin_connection() as connection:
        state = read_stored_state(connection, workload)
    statuses = report.statuses()
    error_codes = report.error_codes()
    lost = state.lost(workload)
    doubled = state.doubled()
    stored_twice = [event_id for event_id, count in report.stored_answers_per_event().items() if count > 1]
    record(
        "database_outage",
        {
            "events": EVENT_COUNT,
            "senders": SENDERS,
            "deliveries_tried": report.attempts,
            "faults_injected": injector.outages_done,
            "fault_description": " then ".join(
                f"pg_ctl stop -m {mode} after {threshold} accepted deliveries, {OUTAGE_SECONDS:.0f} s down"
                for threshold, mode in OUTAGES
            ),
            "statuses": {str(status): count for status, count in sorted(statuses.items())},
            "error_codes": dict(error_codes),
            "answers": dict(report.answers()),
            "rows_lost": len(lost),
            "rows_doubled": len(doubled),
            "events_answered_stored_twice": len(stored_twice),
            "partial_payment_rows": len(state.payment_mismatches),
            "worker_processes_replaced": len(workers_before - stack.worker_pids()),
            "gateway_500s": len(stack.internal_errors()),
            "elapsed_seconds": round(report.elapsed_seconds, 1),
            "function_code": stack.code_description(),
        },
    )

    assert injector.errors == []
    assert injector.outages_done == len(OUTAGES)
    assert statuses[503] > 0, "no delivery met the outage: the fault was not injected during traffic"
    assert set(statuses) <= {200, 503}, f"answers other than 200 and 503: {statuses}"
    assert set(error_codes) <= {"storage_unavailable"}, f"503 bodies: {error_codes}"
    assert all(record.accepted for record in report.records)
    assert lost == []
    assert doubled == []
    assert state.unexpected_event_ids == []
    assert stored_twice == []
    assert state.payment_mismatches == {}
    assert stack.worker_pids() == workers_before
    assert stack.internal_errors() == []
