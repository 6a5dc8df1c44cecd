"""Warm in-process latency of the handler, against one bare insert round trip on the same server.

The handler module is imported once and warmed (secrets fetched, connection open), as in
a warm Lambda execution environment. Events are built and signed before the clock
starts. Handler calls and bare inserts alternate (A/B/A/B) so that drift on the machine
hits both series. Three paths are measured:

- new event: ``lambda_handler`` storing a new signed event, against a bare
  ``INSERT ... ON CONFLICT DO NOTHING`` of a new row on pg8000 in autocommit, prepared so
  that it is one round trip (see ``bench.environment.prepare_floor_insert``);
- duplicate: the same events delivered again, against a bare insert of a row that
  already exists (the floor of a duplicate is a conflicting insert);
- rejection: events signed with the wrong secret, in microseconds, with a check that no
  statement reached the database while they were handled.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bench.environment import prepare_floor_insert
from bench.events import LambdaContext, forged_delivery, signed_delivery
from bench.stats import ratio, summarize

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pg8000.native

    from bench.environment import BenchEnvironment

logger = logging.getLogger(__name__)

WARMUP_EVENTS = 200
ROUND_TRIP_PROBE_EVENTS = 50
# New events for the untimed split of the handler's time (half) and the profile (half).
SPLIT_EVENTS = 600

# Every session on the benchmark database except the one asking: its start time and the
# start time of its latest statement. An unchanged snapshot means no statement ran.
ACTIVITY_SQL = (
    "SELECT pid, backend_start::text, coalesce(query_start::text, '') FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid"
)


class UnexpectedResponse(RuntimeError):
    """The handler returned a response that the path under measurement does not produce."""


def _expect(response: dict[str, Any], status_code: int, field: str, value: str) -> None:
    body = json.loads(response.get("body") or "{}")
    if response.get("statusCode") != status_code or body.get(field) != value:
        raise UnexpectedResponse(
            f"expected {status_code} with {field}={value!r}, got {response.get('statusCode')} {body}: "
            "the benchmark measures only that path, so check the function's configuration"
        )


def _interleaved(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    events: list[dict[str, Any]],
    floor: pg8000.native.PreparedStatement,
    floor_ids: list[str],
    expected: tuple[int, str, str],
    warmup: int,
) -> tuple[list[float], list[float]]:
    """Alternate one handler call and one bare insert per event; return both series in microseconds."""
    handler_us: list[float] = []
    floor_us: list[float] = []
    contexts = [LambdaContext() for _ in events]
    for index, (event, context, row_id) in enumerate(zip(events, contexts, floor_ids, strict=True)):
        handler_first = index % 2 == 0
        for step in ("handler", "floor") if handler_first else ("floor", "handler"):
            start = time.perf_counter_ns()
            if step == "handler":
                response = handler(event, context)
                elapsed = (time.perf_counter_ns() - start) / 1000.0
                _expect(response, *expected)
                if index >= warmup:
                    handler_us.append(elapsed)
            else:
                floor.run(id=row_id)
                elapsed = (time.perf_counter_ns() - start) / 1000.0
                if index >= warmup:
                    floor_us.append(elapsed)
    return handler_us, floor_us


@contextmanager
def _counting_socket_writes() -> Iterator[list[int]]:
    """Count writes through ``socket.SocketIO`` while the block runs.

    pg8000 sends each batch of messages (which ends in a Sync, and then waits for the
    response) with one write to the file object that ``socket.makefile`` returns. So the
    count is the number of database round trips. The Secrets Manager client (http.client) sends
    with ``socket.sendall``, which this does not count.
    """
    counter = [0]
    original = socket.SocketIO.write

    def counting_write(self: socket.SocketIO, data: Any) -> int | None:
        counter[0] += 1
        return original(self, data)

    socket.SocketIO.write = counting_write  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        socket.SocketIO.write = original  # type: ignore[method-assign]


def _round_trips_per_call(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], events: list[dict[str, Any]]
) -> float:
    with _counting_socket_writes() as counter:
        for event in events:
            handler(event, LambdaContext())
    return counter[0] / len(events)


def _time_split(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], events: list[dict[str, Any]]
) -> dict[str, float | None]:
    """Split the handler's mean time per new event into the database statement and the rest.

    The time inside pg8000's ``PreparedStatement.run`` (send, server work, receive) is the
    database's share; everything else runs in the handler's own process. Untimed pass:
    the wrapper adds a little to both.
    """
    import pg8000.native

    original = pg8000.native.PreparedStatement.run
    in_database = [0.0]

    def timed_run(self: Any, **parameters: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, **parameters)
        finally:
            in_database[0] += time.perf_counter() - start

    pg8000.native.PreparedStatement.run = timed_run  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        for event in events:
            handler(event, LambdaContext())
        elapsed = time.perf_counter() - start
    finally:
        pg8000.native.PreparedStatement.run = original  # type: ignore[method-assign]
    per_event_us = elapsed / len(events) * 1e6
    database_us = in_database[0] / len(events) * 1e6
    return {
        "events": len(events),
        "handler_us": round(per_event_us, 1),
        # None when the function no longer runs its statements through PreparedStatement.run.
        "database_us": round(database_us, 1) if database_us > 0 else None,
        "in_process_us": round(per_event_us - database_us, 1) if database_us > 0 else None,
    }


def _profile_top(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], events: list[dict[str, Any]], top: int = 6
) -> list[dict[str, Any]]:
    """Return the Python functions with the most own time over ``events`` (cProfile, untimed pass)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for event in events:
        handler(event, LambdaContext())
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, function), (_calls, _primitive, own_seconds, _cumulative, _callers) in stats.items():
        if filename == "~":
            # A built-in; the socket reads and writes are the database's share, reported apart.
            continue
        rows.append((own_seconds, filename, line, function))
    rows.sort(reverse=True)
    return [
        {
            "function": f"{_short_path(filename)}:{line} {function}",
            "own_us_per_event": round(own_seconds / len(events) * 1e6, 1),
        }
        for own_seconds, filename, line, function in rows[:top]
    ]


def _short_path(filename: str) -> str:
    for marker in ("/payment_webhook/", "/aws_lambda_powertools/", "/pg8000/", "/python3.13/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return filename


def measure_warm_latency(environment: BenchEnvironment, samples: int, rejections: int) -> dict[str, Any]:
    """Measure the new-event, duplicate and rejection paths of the warm handler.

    The caller has put the function package first on ``sys.path`` and the function's
    variables in ``os.environ``.

    Parameters
    ----------
    environment:
        The started benchmark environment (database, signing secret).
    samples:
        Timed handler calls (and as many bare inserts) per path, after a warm-up.
    rejections:
        Timed calls on the rejection path.

    Returns
    -------
    dict
        Summaries in microseconds and the ratios to the floor.
    """
    from payment_webhook.handlers.webhook import lambda_handler

    settings = environment.settings
    if settings is None:
        raise RuntimeError("measure_warm_latency() needs a started BenchEnvironment")
    run_id = environment.run_id
    count = WARMUP_EVENTS + samples
    signed_at = int(time.time())
    events = [signed_delivery(f"evt_{run_id}_warm_{index:06d}", settings.signing_secret, signed_at) for index in range(count)]
    floor_ids = [f"{run_id}-warm-{index}" for index in range(count)]

    floor_connection = environment.connect()
    floor = prepare_floor_insert(floor_connection)
    monitor = environment.connect()
    try:
        new_handler, new_floor = _interleaved(lambda_handler, events, floor, floor_ids, (200, "status", "stored"), WARMUP_EVENTS)
        logger.info("warm latency: new-event path measured (%d samples)", len(new_handler))
        # The same events and rows again: every handler call is a duplicate and every
        # bare insert conflicts.
        duplicate_handler, duplicate_floor = _interleaved(
            lambda_handler, events, floor, floor_ids, (200, "status", "duplicate"), WARMUP_EVENTS
        )
        logger.info("warm latency: duplicate path measured (%d samples)", len(duplicate_handler))

        forged = [forged_delivery(f"evt_{run_id}_forged_{index:06d}", signed_at) for index in range(rejections)]
        forged_contexts = [LambdaContext() for _ in forged]
        before = monitor.run(ACTIVITY_SQL)
        rejection_us: list[float] = []
        for event, context in zip(forged, forged_contexts, strict=True):
            start = time.perf_counter_ns()
            response = lambda_handler(event, context)
            rejection_us.append((time.perf_counter_ns() - start) / 1000.0)
            _expect(response, 400, "error", "invalid_signature")
        after = monitor.run(ACTIVITY_SQL)

        # Untimed: round trips per call on each path, counted at the socket.
        probe_events = [
            signed_delivery(f"evt_{run_id}_trips_{index:03d}", settings.signing_secret)
            for index in range(ROUND_TRIP_PROBE_EVENTS)
        ]
        round_trips = {
            "new_event": _round_trips_per_call(lambda_handler, probe_events),
            "duplicate": _round_trips_per_call(lambda_handler, probe_events),
            "rejection": _round_trips_per_call(lambda_handler, forged[:ROUND_TRIP_PROBE_EVENTS]),
        }
        split_events = [
            signed_delivery(f"evt_{run_id}_split_{index:04d}", settings.signing_secret)
            for index in range(SPLIT_EVENTS)
        ]
        time_split = _time_split(lambda_handler, split_events[: SPLIT_EVENTS // 2])
        profile_top = _profile_top(lambda_handler, split_events[SPLIT_EVENTS // 2 :])
        with _counting_socket_writes() as counter:
            for index in range(ROUND_TRIP_PROBE_EVENTS):
                floor.run(id=f"{run_id}-trips-{index}")
        round_trips["floor_insert"] = counter[0] / ROUND_TRIP_PROBE_EVENTS
    finally:
        floor_connection.close()
        monitor.close()

    new = summarize(new_handler)
    new_floor_summary = summarize(new_floor)
    duplicate = summarize(duplicate_handler)
    duplicate_floor_summary = summarize(duplicate_floor)
    rejection = summarize(rejection_us)
    untouched = [list(row) for row in before] == [list(row) for row in after]
    return {
        "new_event_us": new.as_dict(),
        "floor_insert_us": new_floor_summary.as_dict(),
        "warm_p50_ratio": round(ratio(new.p50, new_floor_summary.p50), 2),
        "warm_p99_ratio": round(ratio(new.p99, new_floor_summary.p99), 2),
        "duplicate_us": duplicate.as_dict(),
        "floor_conflict_us": duplicate_floor_summary.as_dict(),
        "duplicate_p50_ratio": round(ratio(duplicate.p50, duplicate_floor_summary.p50), 2),
        "duplicate_p99_ratio": round(ratio(duplicate.p99, duplicate_floor_summary.p99), 2),
        # The same duplicates over the new-row floor, the denominator of the warm ratios.
        "duplicate_p50_ratio_new_row_floor": round(ratio(duplicate.p50, new_floor_summary.p50), 2),
        "rejection_us": rejection.as_dict(),
        "rejection_database_untouched": untouched,
        "rejection_sessions_checked": len(before),
        "round_trips_per_call": {path: round(value, 2) for path, value in round_trips.items()},
        "new_event_split": time_split,
        "new_event_profile": profile_top,
    }
