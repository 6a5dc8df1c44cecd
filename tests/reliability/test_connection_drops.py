"""Connections dropped between invocations: each warm worker's next invocation reconnects and succeeds.

Every fault is injected while the workers are idle, with each worker holding an open
session. The deliveries that follow come from one sender, one at a time, without retries,
so the stack's pool hands them to the workers in turn and every worker meets its dead
connection on the first invocation after the fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.harness import StackUnderTest
from tests.reliability.sender import Attempt, post_signed
from tests.reliability.workload import build_workload, read_stored_state

# Each fault runs this many times; a round is the fault and then one delivery per worker, twice over.
ROUNDS = 3
DELIVERIES_PER_WORKER = 2


def terminate_backends(stack: StackUnderTest) -> None:
    """End the function's sessions with pg_terminate_backend, as an operator or a failover does."""
    stack.postgres.terminate_connections(stack.database_name)


def restart_fast(stack: StackUnderTest) -> None:
    """Restart the server with a fast shutdown: sessions get admin_shutdown, then the server is gone."""
    stack.postgres.stop(mode="fast")
    stack.postgres.start()


def restart_immediate(stack: StackUnderTest) -> None:
    """Restart the server with an immediate shutdown: sessions are cut without a message, as in a crash."""
    stack.postgres.stop(mode="immediate")
    stack.postgres.start()


FAULTS: dict[str, Callable[[StackUnderTest], None]] = {
    "pg_terminate_backend": terminate_backends,
    "restart_fast": restart_fast,
    "restart_immediate": restart_immediate,
}


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_dropped_connection_next_invocation_succeeds(
    fault_name: str, stack: StackUnderTest, record: Callable[[str, dict[str, Any]], None]
) -> None:
    """After the function's sessions are dropped, every worker's next invocation is stored on the first attempt."""
    fault = FAULTS[fault_name]
    deliveries_per_round = stack.workers * DELIVERIES_PER_WORKER
    workload = build_workload((ROUNDS + 1) * deliveries_per_round, seed=len(fault_name), name="drop")
    events = iter(workload.events)
    workers_before = stack.worker_pids()
    attempts: list[Attempt] = []
    sessions_replaced = 0

    # Every worker opens its session before the first fault.
    for _ in range(deliveries_per_round):
        attempts.append(post_signed(stack.url, next(events).body, stack.signing_secret))
    for _ in range(ROUNDS):
        sessions_before = stack.function_backend_pids()
        fault(stack)
        for _ in range(deliveries_per_round):
            attempts.append(post_signed(stack.url, next(events).body, stack.signing_secret))
        sessions_after = stack.function_backend_pids()
        sessions_replaced += len(sessions_before - sessions_after)

    with stack.admin_connection() as connection:
        state = read_stored_state(connection, workload)
    statuses = [attempt.status for attempt in attempts]
    failed = [status for status in statuses if status != 200]
    record(
        f"connection_drop_{fault_name}",
        {
            "fault": fault_name,
            "deliveries_tried": len(attempts),
            "faults_injected": ROUNDS,
            "sessions_dropped": sessions_replaced,
            "failed_first_attempts": len(failed),
            "rows_lost": len(state.lost(workload)),
            "rows_doubled": len(state.doubled()),
            "worker_processes_replaced": len(workers_before - stack.worker_pids()),
            "function_code": stack.code_description(),
        },
    )

    assert failed == []
    assert sessions_replaced == ROUNDS * stack.workers, "not every worker had its session dropped and replaced"
    assert state.lost(workload) == []
    assert state.doubled() == []
    assert state.payment_mismatches == {}
    assert stack.worker_pids() == workers_before
