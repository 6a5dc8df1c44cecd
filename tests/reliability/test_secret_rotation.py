"""Secret rotations during traffic: the database password over HTTP, the signing secret in process.

Database password: RDS rotates the managed secret by setting a new password on the role,
then making the new value current in Secrets Manager. The test does both, then ends the
function's sessions (as RDS does not, but as a failover or a connection recycle would) so
that every warm worker must reconnect with a password its cache no longer holds.

Signing secret: while the secret contains a JSON array of the new and the old value, events
signed with either pass. Once the old value is removed, an event signed with it is rejected.
The handler runs in this process, with a clock the test moves past the function's
re-read interval for signing secrets.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from local_stack.signing import signature_header
from payment_webhook.dal.secrets import SIGNING_SECRET_REFRESH_SECONDS
from payment_webhook.handlers.webhook import lambda_handler
from tests.reliability.harness import InProcessFunction, StackUnderTest
from tests.reliability.sender import RetryPolicy, post_signed, send_concurrently
from tests.reliability.workload import build_workload, provider_event, read_stored_state
from tests.unit.webhook_test_helpers import FakeLambdaContext, http_api_event

EVENT_COUNT = 600
SENDERS = 4
# A rotation happens when the sender has this many accepted deliveries.
ROTATE_AT = (100, 250, 400)
WORKLOAD_SEED = 7


class DatabaseRotator:
    """Rotates the database password, as RDS does, at given numbers of accepted deliveries."""

    def __init__(self, stack: StackUnderTest) -> None:
        self.stack = stack
        self.rotations = 0
        self.sessions_ended = 0
        self.errors: list[BaseException] = []
        self._accepted = 0
        self._finished = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="database-rotator")

    def on_accepted(self, accepted: int) -> None:
        with self._changed:
            self._accepted = accepted
            self._changed.notify_all()

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        with self._changed:
            self._finished = True
            self._changed.notify_all()
        self._thread.join()

    def rotate(self) -> None:
        """Set a new password on the role, make it the secret's current value, then end the role's sessions."""
        password = secrets.token_urlsafe(24)
        self.stack.postgres.set_password(self.stack.database_role, password)
        self.stack.stack.secrets.put_secret_value(
            self.stack.db_secret_arn, {"username": self.stack.database_role, "password": password}
        )
        self.sessions_ended += self.stack.postgres.terminate_connections(self.stack.database_name)
        self.rotations += 1

    def _run(self) -> None:
        try:
            for threshold in ROTATE_AT:
                with self._changed:
                    self._changed.wait_for(lambda threshold=threshold: self._accepted >= threshold or self._finished)
                    if self._finished:
                        return
                self.rotate()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.errors.append(exc)


def test_database_rotation_during_traffic(
    stack: StackUnderTest, secret_reads: Counter[str], record: Callable[[str, dict[str, Any]], None]
) -> None:
    """Three password rotations during 600 deliveries: no delivery fails twice, each worker re-reads once per rotation."""
    workload = build_workload(EVENT_COUNT, seed=WORKLOAD_SEED, name="rotation")
    workers_before = stack.worker_pids()
    # Every worker opens its session with the current password before the traffic starts.
    for event in build_workload(stack.workers * 2, seed=1, name="warmup").events:
        post_signed(stack.url, event.body, stack.signing_secret)
    reads_before = secret_reads[stack.db_secret_arn]
    rotator = DatabaseRotator(stack)

    rotator.start()
    try:
        report = send_concurrently(
            stack.url,
            workload.events,
            stack.signing_secret,
            senders=SENDERS,
            policy=RetryPolicy(initial_backoff=0.05, max_backoff=0.5, give_up_after=30.0),
            on_accepted=rotator.on_accepted,
        )
    finally:
        rotator.finish()

    rereads = secret_reads[stack.db_secret_arn] - reads_before
    with stack.admin_connection() as connection:
        state = read_stored_state(connection, workload)
    failed_once = [record for record in report.records if record.failed_attempts == 1]
    failed_twice = [record for record in report.records if record.failed_attempts >= 2]
    record(
        "database_secret_rotation",
        {
            "events": EVENT_COUNT,
            "senders": SENDERS,
            "deliveries_tried": report.attempts,
            "faults_injected": rotator.rotations,
            "sessions_ended": rotator.sessions_ended,
            "database_secret_rereads": rereads,
            "deliveries_failed_once": len(failed_once),
            "deliveries_failed_twice": len(failed_twice),
            "statuses": {str(status): count for status, count in sorted(report.statuses().items())},
            "rows_lost": len(state.lost(workload)),
            "rows_doubled": len(state.doubled()),
            "worker_processes_replaced": len(workers_before - stack.worker_pids()),
            "function_code": stack.code_description(),
        },
    )

    assert rotator.errors == []
    assert rotator.rotations == len(ROTATE_AT)
    assert rotator.sessions_ended >= len(ROTATE_AT), "a rotation found no session to end"
    assert failed_twice == []
    assert rereads >= len(ROTATE_AT)
    assert rereads <= len(ROTATE_AT) * stack.workers, f"{rereads} reads of the database secret"
    assert state.lost(workload) == []
    assert state.doubled() == []
    assert state.payment_mismatches == {}
    assert stack.worker_pids() == workers_before


def signed_invocation(body: str, secret: str) -> dict[str, Any]:
    """Return an HTTP API event for ``body`` signed now with ``secret``."""
    return http_api_event(body, headers={"Stripe-Signature": signature_header(body.encode("utf-8"), secret)})


def new_event_body() -> tuple[str, str]:
    """Return a new event id and its body."""
    event_id = f"evt_rel_signing_{secrets.token_hex(8)}"
    body = provider_event(event_id, "customer.created", 1_733_300_000, {"id": "cus_rel", "object": "customer"})
    return event_id, json.dumps(body)


def deliver_in_process(body: str, secret: str) -> tuple[int, dict[str, Any]]:
    """Invoke the handler with ``body`` signed by ``secret``; return the status and the JSON body."""
    response = lambda_handler(signed_invocation(body, secret), FakeLambdaContext())
    return int(response["statusCode"]), json.loads(response["body"])


def test_signing_rotation_both_then_new_only(
    in_process: InProcessFunction, record: Callable[[str, dict[str, Any]], None]
) -> None:
    """While the secret contains both values both pass. After the old one is removed it is rejected."""
    env = in_process.env
    old_secret = env.signing_secret
    new_secret = "whsec_" + secrets.token_hex(24)
    statuses: dict[str, int] = {}
    accepted_ids: list[str] = []

    def deliver(case: str, secret: str) -> tuple[int, dict[str, Any]]:
        event_id, body = new_event_body()
        status, answer = deliver_in_process(body, secret)
        statuses[case] = status
        if status == 200:
            accepted_ids.append(event_id)
        return status, answer

    deliver("old secret before the rotation", old_secret)

    env.secrets_manager.put_secret_value(env.signing_secret_arn, [new_secret, old_secret])
    in_process.clock.advance(SIGNING_SECRET_REFRESH_SECONDS + 1)
    deliver("new secret while both are stored", new_secret)
    deliver("old secret while both are stored", old_secret)

    env.secrets_manager.put_secret_value(env.signing_secret_arn, new_secret)
    in_process.clock.advance(SIGNING_SECRET_REFRESH_SECONDS + 1)
    rows_before = in_process.event_count()
    status_old_after, answer_old_after = deliver("old secret after its removal", old_secret)
    rows_after_old = in_process.event_count()
    deliver("new secret after the old one's removal", new_secret)

    stored = in_process.connection.run(
        "SELECT count(*) FROM webhook_events WHERE event_id = ANY(CAST(:ids AS text[]))", ids=accepted_ids
    )[0][0]
    record(
        "signing_secret_rotation",
        {
            "deliveries_tried": len(statuses),
            "faults_injected": 2,
            "fault_description": "secret set to [new, old], then to new alone; clock moved past the re-read interval",
            "statuses": statuses,
            "rows_lost": len(accepted_ids) - int(stored),
            "rows_stored_for_old_secret_after_removal": rows_after_old - rows_before,
        },
    )

    assert statuses["old secret before the rotation"] == 200
    assert statuses["new secret while both are stored"] == 200
    assert statuses["old secret while both are stored"] == 200
    assert statuses["new secret after the old one's removal"] == 200
    assert status_old_after == 400
    assert answer_old_after == {"error": "invalid_signature"}
    assert rows_after_old == rows_before
