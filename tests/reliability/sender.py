"""A webhook sender that behaves like the provider: it signs each attempt and retries every non-2xx response.

Stripe retries a delivery that does not get a 2xx response, for up to three days with an
exponential backoff. This sender does the same on a compressed scale (a backoff from
``initial_backoff`` doubling up to ``max_backoff``), and gives up on an event after
``give_up_after`` seconds, which the tests count as a lost event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from local_stack.signing import signature_header
from tests.reliability.workload import WorkloadEvent

REQUEST_TIMEOUT_SECONDS = 30
# A status the gateway never sends, recorded when the request itself failed (connection
# refused or reset, timeout).
NO_RESPONSE = 0


@dataclass
class Attempt:
    """One HTTP attempt at delivering an event: its status and parsed JSON body."""

    status: int
    body: dict[str, Any] | None


@dataclass
class DeliveryRecord:
    """Every attempt at delivering one event."""

    event: WorkloadEvent
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.attempts) and 200 <= self.attempts[-1].status < 300

    @property
    def failed_attempts(self) -> int:
        return sum(1 for attempt in self.attempts if not 200 <= attempt.status < 300)

    @property
    def answer(self) -> str | None:
        """Return the ``status`` field of the accepting response (``stored`` or ``duplicate``), or None."""
        if not self.accepted or self.attempts[-1].body is None:
            return None
        value = self.attempts[-1].body.get("status")
        return value if isinstance(value, str) else None


@dataclass
class SenderReport:
    """What a run of senders saw."""

    records: list[DeliveryRecord]
    elapsed_seconds: float

    @property
    def attempts(self) -> int:
        return sum(len(record.attempts) for record in self.records)

    def statuses(self) -> Counter[int]:
        """Return how many attempts got each HTTP status (``NO_RESPONSE`` when none came)."""
        return Counter(attempt.status for record in self.records for attempt in record.attempts)

    def error_codes(self) -> Counter[str]:
        """Return how many non-2xx responses carried each ``error`` code."""
        codes: Counter[str] = Counter()
        for record in self.records:
            for attempt in record.attempts:
                if not 200 <= attempt.status < 300:
                    body = attempt.body or {}
                    codes[str(body.get("error", f"status {attempt.status} without JSON error"))] += 1
        return codes

    def answers(self) -> Counter[str]:
        """Return how many deliveries were accepted as ``stored`` and as ``duplicate``."""
        return Counter(record.answer or "not accepted" for record in self.records)

    def stored_answers_per_event(self) -> Counter[str]:
        """Return how many ``stored`` responses each event id got."""
        counts: Counter[str] = Counter()
        for record in self.records:
            for attempt in record.attempts:
                if attempt.body is not None and attempt.body.get("status") == "stored":
                    counts[record.event.event_id] += 1
        return counts


@dataclass
class RetryPolicy:
    """How the sender retries, in seconds.

    The backoff doubles from ``initial_backoff`` to ``max_backoff``. One event is given up
    after ``give_up_after``, and the whole run stops retrying after ``run_timeout``, so a
    function that never recovers fails the test in minutes rather than hours.
    """

    initial_backoff: float = 0.05
    max_backoff: float = 0.5
    give_up_after: float = 60.0
    run_timeout: float = 120.0
    retry: bool = True


def post_signed(url: str, body: bytes, secret: str) -> Attempt:
    """POST ``body`` signed now with ``secret`` and return the status and JSON body."""
    return post_raw(url, body, signature_header(body, secret))


def post_raw(url: str, body: bytes, signature: str) -> Attempt:
    """POST ``body`` with ``signature`` as its Stripe-Signature header and return the status and JSON body.

    Each request opens its own connection. NOTE: on a kept-alive connection the local
    gateway's responses take about 40 ms longer, because it writes the headers and the body
    in two small segments and Nagle's algorithm delays the second until the client's
    delayed ACK.
    """
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature,
        "User-Agent": "payment-webhook-reliability-tests",
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
    except requests.RequestException:
        return Attempt(NO_RESPONSE, None)
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    return Attempt(response.status_code, parsed if isinstance(parsed, dict) else None)


def deliver_until_accepted(
    url: str, event: WorkloadEvent, secret: str, policy: RetryPolicy, run_ends_at: float = float("inf")
) -> DeliveryRecord:
    """Deliver one event, signing each attempt afresh, until it gets a 2xx response or the policy gives up.

    ``run_ends_at`` is the ``time.monotonic()`` value after which no attempt is retried.
    """
    record = DeliveryRecord(event)
    backoff = policy.initial_backoff
    give_up_at = min(time.monotonic() + policy.give_up_after, run_ends_at)
    while True:
        record.attempts.append(post_signed(url, event.body, secret))
        if record.accepted or not policy.retry or time.monotonic() >= give_up_at:
            return record
        time.sleep(backoff)
        backoff = min(backoff * 2, policy.max_backoff)


def send_concurrently(
    url: str,
    events: Iterable[WorkloadEvent],
    secret: str,
    *,
    senders: int,
    policy: RetryPolicy,
    on_accepted: Callable[[int], None] | None = None,
) -> SenderReport:
    """Deliver ``events`` from ``senders`` threads that take the next event from one shared queue.

    Parameters
    ----------
    url:
        The webhook URL.
    events:
        Deliveries in the order they are taken; an event listed twice is delivered twice.
    secret:
        Signing secret.
    senders:
        Number of threads.
    policy:
        Retry policy of every delivery.
    on_accepted:
        Called after each accepted delivery with the number of accepted deliveries so
        far, from the sender thread (fault injectors wait on it).

    Returns
    -------
    SenderReport
        One record per delivery, in the order the deliveries finished.
    """
    pending: queue.Queue[WorkloadEvent] = queue.Queue()
    for event in events:
        pending.put(event)
    records: list[DeliveryRecord] = []
    accepted_count = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        nonlocal accepted_count
        while True:
            try:
                event = pending.get_nowait()
            except queue.Empty:
                return
            try:
                record = deliver_until_accepted(url, event, secret, policy, run_ends_at)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(exc)
                return
            with lock:
                records.append(record)
                accepted_count += record.accepted
                accepted = accepted_count
            if on_accepted is not None and record.accepted:
                on_accepted(accepted)

    started = time.monotonic()
    run_ends_at = started + policy.run_timeout
    threads = [threading.Thread(target=run, name=f"webhook-sender-{number}") for number in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return SenderReport(records, time.monotonic() - started)
