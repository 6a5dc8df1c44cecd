"""``python -m bench`` (``make bench``): measure everything side by side in one run and write the results.

Starts the local stack in .local/bench, then measures in this order: package size,
import times, cold starts against the naive baseline, the secret fetch comparison, the
driver comparison, warm in-process latency, the adapter comparison, concurrency, and the
cost model. It writes bench/results.json and docs/BENCHMARKS.md and prints the targets.
``--quick`` runs smaller sample counts, and results.json and the page record which mode ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_REQUIREMENTS = Path("bench/requirements.txt")
# Modules that only the benchmarks import, from bench/requirements.txt.
BENCH_ONLY_MODULES = {"psycopg": "psycopg[binary]", "aws_xray_sdk": "aws-xray-sdk"}

logger = logging.getLogger("bench")


@dataclass(frozen=True)
class RunSizes:
    """Sample counts of one mode."""

    warm_samples: int
    rejections: int
    cold_runs: int
    import_runs: int
    driver_samples: int
    driver_connects: int
    secret_runs: int
    adapter_samples: int
    concurrency_workers: int
    concurrency_deliveries: int
    duplicate_share: float


MODES = {
    "full": RunSizes(3000, 3000, 7, 7, 3000, 20, 5, 5000, 8, 20_000, 0.10),
    "quick": RunSizes(500, 500, 5, 5, 500, 10, 3, 1000, 8, 4_000, 0.10),
}


def missing_bench_packages() -> list[str]:
    """Return the bench-only packages that are not installed."""
    return [package for module, package in BENCH_ONLY_MODULES.items() if importlib.util.find_spec(module) is None]


def _miss_causes(details: dict[str, Any]) -> dict[str, str]:
    """Return, per target figure, the cause this run's own figures point to if the target is missed."""
    from bench.cost import ONE_SUBNET_OPTION

    latency = details["latency"]
    trips = latency["round_trips_per_call"]
    cold = details["cold_start"]
    breakdown = details["importtime"]["groups"][:3]
    dev_lines = sorted(details["cost"]["lines"]["dev"], key=lambda line: line["monthly_usd"], reverse=True)[:2]
    package = details["package"]["largest"][0]

    split = latency["new_event_split"]
    if trips["new_event"] == trips["floor_insert"]:
        ratio_cause = f"a new event takes as many database round trips as the floor ({trips['new_event']:g}), "
    else:
        ratio_cause = (
            f"a new event takes {trips['new_event']:g} database round trips against the floor's "
            f"{trips['floor_insert']:g}, "
        )
    ratio_cause += "but more work on each side of them: "
    if split["database_us"] is not None:
        ratio_cause += (
            f"its statement (the jsonb event row with its indexes and the payments upsert) takes "
            f"{split['database_us']:.0f} us per event against {latency['floor_insert_us']['p50']:.0f} us at p50 "
            f"for the floor's one-column insert, and the handler's own process adds {split['in_process_us']:.0f} us "
            "(signature, JSON checks, logging, metrics; see the profile under Warm latency)"
        )
    else:
        ratio_cause += f"handler p50 {latency['new_event_us']['p50']:.0f} us, floor p50 {latency['floor_insert_us']['p50']:.0f} us"

    cpu = details["concurrency"]["cpu_per_delivery"]
    floor_cpu = [cpu["floor_before"], cpu["floor_after"]]
    floor_workers = sum(item["workers_us"] for item in floor_cpu) / 2
    floor_postgres = sum(item["postgres_us"] for item in floor_cpu) / 2

    return {
        "warm_p50_ratio": ratio_cause,
        "warm_p99_ratio": ratio_cause,
        "rejection_database_untouched": "a database session ran a statement while invalid signatures were handled",
        "import_ms": "the largest imports are "
        + ", ".join(f"{group['package']} ({group['ms']:.0f} ms)" for group in breakdown),
        "cold_start_ratio": (
            f"import {cold['function']['import_ms']:.0f} ms against {cold['baseline']['import_ms']:.0f} ms, "
            f"first event {cold['function']['first_event_ms']:.0f} ms against {cold['baseline']['first_event_ms']:.0f} ms"
        ),
        "concurrency_ratio": (
            f"the workers and PostgreSQL share {details['machine_nproc']} cores, so throughput follows CPU time per "
            f"delivery: {cpu['handler']['workers_us']:.0f} us in the workers + {cpu['handler']['postgres_us']:.0f} us "
            f"in PostgreSQL for the handler against {floor_workers:.0f} + {floor_postgres:.0f} us for the bare insert"
        ),
        "concurrency_exactly_once": "rows or answers do not match the unique events; see the concurrency table",
        "package_zipped_bytes": f"{package['entry']} is {package['zipped_bytes']:,} bytes zipped",
        "cost_dev_usd": "the largest lines are "
        + ", ".join(f"{line['item']} (${line['monthly_usd']:.2f})" for line in dev_lines)
        + "".join(
            f"; the endpoint in one subnet would save ${saving['monthly_usd']:.2f} a month (see Cost)"
            for saving in details["cost"]["savings_usd"]
            if saving["environment"] == "dev" and saving["choice"] == ONE_SUBNET_OPTION
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run every measurement, and return the results document."""
    from bench import cost
    from bench.adapters import compare_adapters
    from bench.cold_start import copy_function, measure_cold_start
    from bench.concurrency import measure_concurrency
    from bench.drivers import compare_drivers
    from bench.environment import BenchEnvironment, apply_variables
    from bench.imports import importtime_breakdown, time_imports
    from bench.latency import measure_warm_latency
    from bench.machine import describe
    from bench.package import loaded_bytes_by_entry, measure_package
    from bench.secret_fetch import compare_secret_fetch

    sizes = MODES["quick" if args.quick else "full"]
    work_dir: Path = args.work_dir
    package_dir = args.build_dir / "PaymentWebhookFunction"
    details: dict[str, Any] = {}

    environment = BenchEnvironment(work_dir, args.build_dir)
    try:
        settings = environment.start()
        version, server_settings = environment.postgres_description()
        machine = describe(version, server_settings)
        function_dir = copy_function(settings.code_dir, (work_dir / "function").resolve())
        logger.info("function code: %s; copied to %s", settings.code_description, function_dir)

        details["package"] = measure_package(package_dir)
        logger.info("package: %s bytes zipped", f"{details['package']['zipped_bytes']:,}")
        details["imports"] = time_imports(function_dir, sizes.import_runs)
        details["importtime"] = importtime_breakdown(function_dir)
        details["cold_start"] = measure_cold_start(environment, function_dir, work_dir, sizes.cold_runs)
        loaded_files = details["cold_start"]["function"].pop("package_files_loaded")
        details["package"]["loaded_by_cold_start"] = loaded_bytes_by_entry(function_dir.resolve(), loaded_files)
        details["secret_fetch"] = compare_secret_fetch(environment, function_dir, sizes.secret_runs)
        details["drivers"] = compare_drivers(
            settings.database, sizes.driver_samples, sizes.driver_connects, environment.run_id
        )

        sys.path.insert(0, str(function_dir))
        apply_variables(settings.variables)
        details["latency"] = measure_warm_latency(environment, sizes.warm_samples, sizes.rejections)
        details["adapters"] = compare_adapters(sizes.adapter_samples)
        details["concurrency"] = measure_concurrency(
            environment,
            function_dir,
            sizes.concurrency_workers,
            sizes.concurrency_deliveries,
            sizes.duplicate_share,
            work_dir / "handler-workers.log",
        )
        logger.info(
            "concurrency: %.0f events/s, floor %.0f inserts/s, exactly once: %s",
            details["concurrency"]["handler_events_per_second"],
            details["concurrency"]["floor_inserts_per_second"],
            details["concurrency"]["exactly_once"],
        )
    finally:
        environment.stop()

    from bench.machine import load_average

    machine["load_average_at_end"] = load_average()
    estimates, saved = cost.estimate_all()
    details["cost"] = cost.as_results(estimates, saved)
    details["cost_markdown"] = cost.format_markdown(estimates, saved)
    details["machine_nproc"] = machine["nproc"]

    from bench.report import evaluate_targets, headline_figures

    figures = headline_figures(details)
    mode = "quick" if args.quick else "full"
    command = "make bench" if not args.quick else f"{Path(sys.executable).name} -m bench --quick"
    return {
        "command": args.command or command,
        "mode": mode,
        "mode_note": (
            f"Mode: {mode} ({sizes.warm_samples:,} warm samples per path, {sizes.cold_runs} cold starts per side, "
            f"{sizes.concurrency_deliveries:,} concurrent deliveries); every figure on this page comes from this "
            'one run, except those under "Warm path: what was tried", which say where they come from.'
        ),
        "sizes": asdict(sizes),
        "machine": machine,
        "function_code": settings.code_description,
        "figures": figures,
        "targets": evaluate_targets(figures),
        "details": details,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return 0, or 2 when a bench-only package or the build is missing."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run smaller sample counts (about a minute); the page records the mode")
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"), help="sam build output folder")
    parser.add_argument("--work-dir", type=Path, default=Path(".local/bench"), help="folder for the stack's data and logs")
    parser.add_argument("--results", type=Path, default=Path("bench/results.json"), help="figures by name (JSON)")
    parser.add_argument("--markdown", type=Path, default=Path("docs/BENCHMARKS.md"), help="page to regenerate")
    parser.add_argument("--command", help="command to record on the page (default: the one that ran)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="bench: %(message)s")
    # The local stack's own modules log every step at INFO; keep this run's output to ours.
    logging.getLogger("local_stack").setLevel(logging.WARNING)

    missing = missing_bench_packages()
    if missing:
        print(
            f"bench: {', '.join(missing)} not installed: run `.venv/bin/python -m pip install -r {BENCH_REQUIREMENTS}` "
            "(the driver comparison and the naive baseline need them)",
            file=sys.stderr,
        )
        return 2
    if not (args.build_dir / "PaymentWebhookFunction").is_dir():
        print(f"bench: {args.build_dir}/PaymentWebhookFunction not found: run `make build` first", file=sys.stderr)
        return 2

    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # The in-process handler writes its JSON log lines to standard output. In Lambda they go
    # to CloudWatch; here they go to a file, so they neither flood the terminal nor wait for it.
    console = os.dup(1)
    log_fd = os.open(args.work_dir / "handler.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sys.stdout.flush()
    os.dup2(log_fd, 1)
    try:
        results = run(args)
    finally:
        sys.stdout.flush()
        os.dup2(console, 1)
        os.close(console)
        os.close(log_fd)

    from bench.report import render_markdown

    cost_markdown = results["details"].pop("cost_markdown")
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(render_markdown(results, cost_markdown, _miss_causes(results["details"])))

    print(f"bench: {results['mode']} run took {results['elapsed_seconds']:.0f} s; wrote {args.results} and {args.markdown}")
    for target in results["targets"]:
        verdict = "pass" if target["met"] else "MISS"
        print(f"  {verdict:4}  {target['figure']} = {target['value']} (target {target['comparison']} {target['limit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
