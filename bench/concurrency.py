"""Concurrency: worker processes deliver shuffled events with duplicates; exactly-once is checked after.

Each worker is a warm "execution environment": a process started with multiprocessing's
spawn method that imports the handler once and warms it (secrets read, connection open)
before the clock starts. The deliveries (by default 20,000, 10% of them a second delivery
of an event delivered elsewhere in the sequence) are shuffled and dealt round-robin, so a
duplicate often races its original in another worker.

The same workers also run the bare floor insert, one row per delivery with the same ids
and duplicates, once before and once after the handler phase. The floor's rate is the
mean of the two, so drift during the run hits both sides of the ratio. Every phase starts
when all workers are ready and ends when the last one finishes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.stats import ratio

if TYPE_CHECKING:
    from pathlib import Path

    from bench.environment import BenchEnvironment
    from local_stack.postgres import DatabaseInfo

logger = logging.getLogger(__name__)

PHASES = ("floor_before", "handler", "floor_after")
# Opened after the last phase: the workers keep their connections (and so their server
# backends, whose CPU time is counted) until the parent has read the server's CPU time.
FINISH_GATE = "finish"
PHASE_TIMEOUT_SECONDS = 600
WORKER_START_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process's deliveries and the settings to reach the stack."""

    index: int
    run_id: str
    code_dir: str
    variables: dict[str, str]
    signing_secret: str
    database: DatabaseInfo
    event_ids: list[str]
    log_path: str


def plan_deliveries(total: int, duplicate_share: float, run_id: str, seed: int = 20_000) -> tuple[list[str], int]:
    """Return ``total`` shuffled event ids, ``duplicate_share`` of them a second delivery, and the unique count.

    Each duplicate repeats a different event, so no event is delivered more than twice.
    """
    duplicates = round(total * duplicate_share)
    unique = total - duplicates
    rng = random.Random(seed)
    event_ids = [f"evt_{run_id}_conc_{index:06d}" for index in range(unique)]
    deliveries = event_ids + rng.sample(event_ids, duplicates)
    rng.shuffle(deliveries)
    return deliveries, unique


def _worker(plan: WorkerPlan, ready: Any, gates: dict[str, Any], results: Any) -> None:
    """Body of one worker process: warm up, then run each phase when its gate opens."""
    # The handler's JSON log lines and metrics go to a file, as they go to CloudWatch in Lambda.
    log_fd = os.open(plan.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    sys.path.insert(0, plan.code_dir)
    os.environ.update(plan.variables)

    from bench.environment import connect, prepare_floor_insert
    from bench.events import LambdaContext, signed_delivery
    from payment_webhook.handlers.webhook import lambda_handler

    warm = lambda_handler(signed_delivery(f"evt_{plan.run_id}_worker_{plan.index}", plan.signing_secret), LambdaContext())
    floor_connection = connect(plan.database)
    floor = prepare_floor_insert(floor_connection)
    floor.run(id=f"{plan.run_id}-worker-{plan.index}")
    if warm.get("statusCode") != 200:
        results.put((plan.index, "error", 0.0, 0.0, {"warm_up": warm}))
        return

    for phase in PHASES:
        if phase == "handler":
            signed_at = int(time.time())
            events = [signed_delivery(event_id, plan.signing_secret, signed_at) for event_id in plan.event_ids]
            contexts = [LambdaContext() for _ in events]
        ready.put((plan.index, phase))
        if not gates[phase].wait(PHASE_TIMEOUT_SECONDS):
            return
        outcomes: Counter[str] = Counter()
        cpu_start = time.process_time()
        start = time.clock_gettime(time.CLOCK_MONOTONIC)
        if phase == "handler":
            responses = [lambda_handler(event, context) for event, context in zip(events, contexts, strict=True)]
            end = time.clock_gettime(time.CLOCK_MONOTONIC)
            for response in responses:
                body = json.loads(response.get("body") or "{}")
                outcomes[str(body.get("status") or body.get("error"))] += 1
        else:
            for event_id in plan.event_ids:
                floor.run(id=f"{plan.run_id}-{phase}-{event_id}")
            end = time.clock_gettime(time.CLOCK_MONOTONIC)
            outcomes["inserted"] = len(plan.event_ids)
        outcomes["cpu_us"] = round((time.process_time() - cpu_start) * 1e6)
        results.put((plan.index, phase, start, end, dict(outcomes)))
    gates[FINISH_GATE].wait(PHASE_TIMEOUT_SECONDS)
    floor_connection.close()


def measure_concurrency(
    environment: BenchEnvironment, code_dir: Path, workers: int, total: int, duplicate_share: float, log_path: Path
) -> dict[str, Any]:
    """Deliver ``total`` events from ``workers`` processes, check exactly-once, and compare with bare inserts.

    Parameters
    ----------
    environment:
        The started benchmark environment.
    code_dir:
        The function package the workers import.
    workers:
        Worker processes.
    total:
        Deliveries, duplicates included.
    duplicate_share:
        Share of deliveries that repeat an earlier event (0.10 for 10%).
    log_path:
        File that receives the workers' standard output (the handler's log lines).

    Returns
    -------
    dict
        Events per second for the handler and the floor, their ratio, the outcome
        counts and the exactly-once check.

    Raises
    ------
    RuntimeError
        A worker failed to warm up, or a phase did not finish within the timeout.
    """
    settings = environment.settings
    if settings is None:
        raise RuntimeError("measure_concurrency() needs a started BenchEnvironment")
    deliveries, unique = plan_deliveries(total, duplicate_share, environment.run_id)
    server_pid = environment.postgres_pid()
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    results = context.Queue()
    gates = {phase: context.Event() for phase in (*PHASES, FINISH_GATE)}
    processes = []
    for index in range(workers):
        plan = WorkerPlan(
            index=index,
            run_id=environment.run_id,
            code_dir=str(code_dir),
            variables=settings.variables,
            signing_secret=settings.signing_secret,
            database=settings.database,
            event_ids=deliveries[index::workers],
            log_path=str(log_path),
        )
        process = context.Process(target=_worker, args=(plan, ready, gates, results), name=f"bench-worker-{index}")
        process.start()
        processes.append(process)

    spans: dict[str, list[tuple[float, float]]] = {phase: [] for phase in PHASES}
    outcomes: dict[str, Counter[str]] = {phase: Counter() for phase in PHASES}
    server_cpu_us: dict[str, float] = {}
    try:
        for phase in PHASES:
            for _ in range(workers):
                ready.get(timeout=WORKER_START_TIMEOUT_SECONDS)
            server_cpu_before = postgres_cpu_seconds(server_pid)
            gates[phase].set()
            for _ in range(workers):
                index, reported_phase, start, end, counts = results.get(timeout=PHASE_TIMEOUT_SECONDS)
                if reported_phase == "error":
                    raise RuntimeError(f"worker {index} failed to warm up: {counts}")
                spans[reported_phase].append((start, end))
                outcomes[reported_phase].update(counts)
            server_cpu_us[phase] = _cpu_difference(server_cpu_before, postgres_cpu_seconds(server_pid)) * 1e6
            logger.info("concurrency: %s phase done", phase)
    finally:
        gates[FINISH_GATE].set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()

    def rate(phase: str) -> float:
        starts, ends = zip(*spans[phase], strict=True)
        return total / (max(ends) - min(starts))

    handler_rate = rate("handler")
    floor_rates = [rate("floor_before"), rate("floor_after")]
    floor_rate = sum(floor_rates) / len(floor_rates)

    connection = environment.connect()
    try:
        stored_rows, distinct_ids = connection.run(
            "SELECT count(*), count(DISTINCT event_id) FROM webhook_events WHERE event_id LIKE :prefix",
            prefix=f"evt_{environment.run_id}_conc_%",
        )[0]
        payment_rows = connection.run(
            "SELECT count(*) FROM payments WHERE last_event_id LIKE :prefix",
            prefix=f"evt_{environment.run_id}_conc_%",
        )[0][0]
    finally:
        connection.close()

    def cpu_per_delivery(phase: str) -> dict[str, float]:
        return {
            "workers_us": round(outcomes[phase]["cpu_us"] / total, 1),
            "postgres_us": round(server_cpu_us[phase] / total, 1),
        }

    handler_outcomes = {key: value for key, value in outcomes["handler"].items() if key != "cpu_us"}
    exactly_once = (
        stored_rows == unique
        and distinct_ids == unique
        and handler_outcomes.get("stored", 0) == unique
        and handler_outcomes.get("duplicate", 0) == total - unique
    )
    return {
        "workers": workers,
        "deliveries": total,
        "unique_events": unique,
        "duplicate_deliveries": total - unique,
        "handler_events_per_second": round(handler_rate, 1),
        "floor_inserts_per_second": round(floor_rate, 1),
        "floor_inserts_per_second_before_after": [round(value, 1) for value in floor_rates],
        "concurrency_ratio": round(ratio(handler_rate, floor_rate), 2),
        "handler_outcomes": handler_outcomes,
        "rows_stored": stored_rows,
        "distinct_event_ids": distinct_ids,
        "payment_rows": payment_rows,
        "exactly_once": exactly_once,
        "cpu_per_delivery": {
            "handler": cpu_per_delivery("handler"),
            "floor_before": cpu_per_delivery("floor_before"),
            "floor_after": cpu_per_delivery("floor_after"),
        },
    }


def postgres_cpu_seconds(server_pid: int | None) -> dict[int, float]:
    """Return the CPU seconds (user + system) used so far by each process of one PostgreSQL server.

    The server is the postmaster ``server_pid`` and its children, which are one backend per
    connection and the background processes. Without a pid (a server that
    ``DATABASE_URL`` names, possibly on another machine) the result is empty.
    """
    if server_pid is None:
        return {}
    import psutil

    try:
        postmaster = psutil.Process(server_pid)
        processes = [postmaster, *postmaster.children()]
    except psutil.NoSuchProcess:
        return {}
    seconds: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _cpu_difference(before: dict[int, float], after: dict[int, float]) -> float:
    """Return the CPU seconds used between two snapshots by the processes alive at the second.

    NOTE: a process that exited in between (an autovacuum worker) is left out, so the
    figure can be slightly low.
    """
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
