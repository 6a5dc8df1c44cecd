"""Driver comparison: pg8000 against psycopg 3 (binary) on the same server, database and table.

Both drivers run the bare floor insert in autocommit, one row per call and one round trip
each. pg8000 uses a prepared statement. psycopg prepares the statement itself after five
executions and sends Parse, Bind and Execute together before that. Samples are
interleaved so drift on the machine hits both. Connect time is measured the same way,
because the function connects once per cold start.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pg8000.native

from bench.environment import connect, prepare_floor_insert
from bench.stats import summarize

if TYPE_CHECKING:
    from local_stack.postgres import DatabaseInfo

logger = logging.getLogger(__name__)

PSYCOPG_FLOOR_INSERT_SQL = "INSERT INTO bench_floor (id) VALUES (%s) ON CONFLICT DO NOTHING"
WARMUP_CALLS = 200


def _psycopg_connect(database: DatabaseInfo) -> Any:
    import psycopg

    return psycopg.connect(
        host=database.host,
        port=database.port,
        dbname=database.name,
        user=database.username,
        password=database.password,
        autocommit=True,
        connect_timeout=10,
        sslmode="disable",
    )


def compare_drivers(database: DatabaseInfo, samples: int, connects: int, run_id: str) -> dict[str, Any]:
    """Measure one insert round trip and one connect with each driver, interleaved.

    Parameters
    ----------
    database:
        The database that contains ``bench_floor``.
    samples:
        Timed inserts per driver.
    connects:
        Timed connects per driver: TCP without TLS (off on both), scram-sha-256
        authentication, as the local stack runs.
    run_id:
        Prefix that keeps this run's rows apart from earlier runs'.

    Returns
    -------
    dict
        ``insert_us`` and ``connect_ms`` summaries per driver, and the driver versions.
    """
    import psycopg

    pg8000_connection = connect(database)
    pg8000_insert = prepare_floor_insert(pg8000_connection)
    psycopg_connection = _psycopg_connect(database)
    pg8000_times: list[float] = []
    psycopg_times: list[float] = []
    try:
        for index in range(WARMUP_CALLS + samples):
            pg8000_id = f"{run_id}-drv-pg8000-{index}"
            psycopg_id = f"{run_id}-drv-psycopg-{index}"
            # Alternate which driver goes first, so neither always follows the other's commit.
            order = ((pg8000_id, True), (psycopg_id, False)) if index % 2 == 0 else ((psycopg_id, False), (pg8000_id, True))
            for row_id, is_pg8000 in order:
                start = time.perf_counter_ns()
                if is_pg8000:
                    pg8000_insert.run(id=row_id)
                else:
                    psycopg_connection.execute(PSYCOPG_FLOOR_INSERT_SQL, (row_id,))
                elapsed_us = (time.perf_counter_ns() - start) / 1000.0
                if index >= WARMUP_CALLS:
                    (pg8000_times if is_pg8000 else psycopg_times).append(elapsed_us)
    finally:
        pg8000_connection.close()
        psycopg_connection.close()

    pg8000_connects: list[float] = []
    psycopg_connects: list[float] = []
    for _ in range(connects):
        start = time.perf_counter_ns()
        connection = connect(database)
        pg8000_connects.append((time.perf_counter_ns() - start) / 1e6)
        connection.close()
        start = time.perf_counter_ns()
        other = _psycopg_connect(database)
        psycopg_connects.append((time.perf_counter_ns() - start) / 1e6)
        other.close()

    result = {
        "pg8000": {
            "version": pg8000.__version__,
            "insert_us": summarize(pg8000_times).as_dict(),
            "connect_ms": summarize(pg8000_connects).as_dict(2),
        },
        "psycopg": {
            "version": f"{psycopg.__version__} ({psycopg.pq.__impl__} implementation, libpq {psycopg.pq.version()})",
            "insert_us": summarize(psycopg_times).as_dict(),
            "connect_ms": summarize(psycopg_connects).as_dict(2),
        },
    }
    logger.info(
        "drivers: insert p50 pg8000 %.0f us, psycopg %.0f us",
        result["pg8000"]["insert_us"]["p50"],
        result["psycopg"]["insert_us"]["p50"],
    )
    return result
