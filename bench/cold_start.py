"""Cold start: fresh interpreters import the handler and handle their first event.

Each run is a new process: import the handler module (``import_ms``), then handle one new
signed event, which includes reading both secrets from the local Secrets Manager and
opening the database connection (``cold_start_ms`` is both together). The naive
baseline (bench/probes/naive_baseline.py) runs alternately with the function, so drift
hits both; ``cold_start_ratio`` is the function's median over the baseline's.

The function runs from a copy of the code the local stack chose (the package ``sam build``
made, when it runs on this host), so the bytecode the interpreter writes stays out of the
build folder. Lambda's /var/task is read-only and ``sam build`` ships no bytecode, so in
Lambda every module of the package is compiled at each cold start. ``import_ms_no_bytecode`` measures that case with ``-B`` on a copy that
has no ``__pycache__``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

from bench.events import signed_delivery
from bench.fresh import run_probe
from bench.stats import median, ratio

if TYPE_CHECKING:
    from pathlib import Path

    from bench.environment import BenchEnvironment

logger = logging.getLogger(__name__)


def copy_function(package_dir: Path, destination: Path) -> Path:
    """Copy the function package ``package_dir`` to ``destination`` without any bytecode."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(package_dir, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def _event_file(directory: Path, event_id: str, secret: str) -> str:
    path = directory / f"{event_id}.json"
    path.write_text(json.dumps(signed_delivery(event_id, secret, int(time.time()))))
    return str(path)


def measure_cold_start(
    environment: BenchEnvironment, function_dir: Path, scratch: Path, runs: int
) -> dict[str, Any]:
    """Time ``runs`` cold starts of the function and of the naive baseline, alternately.

    Parameters
    ----------
    environment:
        The started benchmark environment.
    function_dir:
        A copy of the function package (see :func:`copy_function`); the interpreters
        write their bytecode into it.
    scratch:
        Folder for the copy without bytecode and for the event files.
    runs:
        Timed processes per side (at least 5); one untimed run per side comes first so
        the bytecode caches are written.

    Returns
    -------
    dict
        Medians of import, first event and cold start per side, the ratio, every sample,
        and the import time without bytecode.
    """
    settings = environment.settings
    if settings is None:
        raise RuntimeError("measure_cold_start() needs a started BenchEnvironment")
    scratch.mkdir(parents=True, exist_ok=True)
    no_bytecode_dir = copy_function(settings.code_dir, scratch / "function-no-bytecode")
    events_dir = scratch / "cold-events"
    events_dir.mkdir(exist_ok=True)
    env = settings.variables
    run_id = environment.run_id

    function_runs: list[dict[str, Any]] = []
    baseline_runs: list[dict[str, Any]] = []
    for index in range(runs + 1):
        event_file = _event_file(events_dir, f"evt_{run_id}_cold_{index:03d}", settings.signing_secret)
        function_figures = run_probe("cold_function.py", event_file, str(function_dir), env=env)
        baseline_file = _event_file(events_dir, f"evt_{run_id}_naive_{index:03d}", settings.signing_secret)
        baseline_figures = run_probe("naive_baseline.py", baseline_file, env=env)
        for figures, side in ((function_figures, "function"), (baseline_figures, "baseline")):
            if figures.get("status_code") != 200:
                raise RuntimeError(
                    f"cold start of the {side} returned status {figures.get('status_code')}: {figures.get('body')}"
                )
        if index == 0:
            continue
        function_runs.append(function_figures)
        baseline_runs.append(baseline_figures)
        logger.info(
            "cold start %d/%d: function %.0f ms, baseline %.0f ms",
            index, runs, function_figures["cold_start_ms"], baseline_figures["cold_start_ms"],
        )

    no_bytecode_imports = []
    for index in range(runs):
        event_file = _event_file(events_dir, f"evt_{run_id}_nopyc_{index:03d}", settings.signing_secret)
        figures = run_probe("cold_function.py", event_file, str(no_bytecode_dir), env=env, python_flags=("-B",))
        no_bytecode_imports.append(float(figures["import_ms"]))

    def medians(samples: list[dict[str, Any]]) -> dict[str, float]:
        return {
            name: round(median([float(sample[name]) for sample in samples]), 1)
            for name in ("import_ms", "first_event_ms", "cold_start_ms")
        }

    function_medians = medians(function_runs)
    baseline_medians = medians(baseline_runs)
    return {
        "runs": runs,
        "function": {
            **function_medians,
            "samples_ms": [round(float(sample["cold_start_ms"]), 1) for sample in function_runs],
            "modules_loaded": function_runs[-1]["modules_loaded"],
            # Top-level packages that the handler imports only while handling its first event.
            "deferred_packages": sorted(
                {name.split(".", 1)[0] for name in function_runs[-1]["modules_loaded_by_first_event"]}
            ),
            "package_files_loaded": function_runs[-1]["package_files_loaded"],
        },
        "baseline": {
            **baseline_medians,
            "samples_ms": [round(float(sample["cold_start_ms"]), 1) for sample in baseline_runs],
            "modules_loaded": baseline_runs[-1]["modules_loaded"],
        },
        "cold_start_ratio": round(ratio(function_medians["cold_start_ms"], baseline_medians["cold_start_ms"]), 2),
        "import_ratio": round(ratio(function_medians["import_ms"], baseline_medians["import_ms"]), 2),
        "import_ms_no_bytecode": round(median(no_bytecode_imports), 1),
    }
