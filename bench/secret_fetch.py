"""Secret fetch comparison: boto3 against the function's stdlib client, first call in a fresh process.

Both read the RDS-style database secret from the local Secrets Manager (moto's server on
127.0.0.1), so the server's own time is in both figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bench.fresh import run_probe
from bench.stats import median

if TYPE_CHECKING:
    from pathlib import Path

    from bench.environment import BenchEnvironment

logger = logging.getLogger(__name__)

CLIENTS = ("boto3", "function")
FIGURES = ("import_ms", "client_ms", "first_call_ms", "total_ms", "warm_call_ms")


def compare_secret_fetch(environment: BenchEnvironment, function_dir: Path, runs: int) -> dict[str, Any]:
    """Run each client ``runs`` times in fresh interpreters (after one untimed run each), alternately.

    Returns
    -------
    dict
        Per client, the median of each figure in milliseconds.
    """
    settings = environment.settings
    if settings is None:
        raise RuntimeError("compare_secret_fetch() needs a started BenchEnvironment")
    secret_arn = settings.variables["DB_SECRET_ARN"]
    samples: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    for index in range(runs + 1):
        for client in CLIENTS:
            figures = run_probe("secret_fetch.py", client, secret_arn, str(function_dir), env=settings.variables)
            if index > 0:
                samples[client].append(figures)
    result = {
        client: {name: round(median([float(run[name]) for run in runs_of_client]), 1) for name in FIGURES}
        for client, runs_of_client in samples.items()
    }
    for client in CLIENTS:
        result[client]["runs"] = runs
    logger.info(
        "secret fetch: boto3 %.0f ms, function client %.0f ms (import + client + first call)",
        result["boto3"]["total_ms"], result["function"]["total_ms"],
    )
    return result
