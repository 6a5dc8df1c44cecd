"""Turn one run's results into bench/results.json's figures and docs/BENCHMARKS.md.

The prose of docs/BENCHMARKS.md lives in bench/BENCHMARKS.template.md. This module fills
its ``{{name}}`` placeholders with tables and verdicts computed from the figures, so a new
run rewrites the numbers and keeps the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cost import TRAFFIC

TEMPLATE_PATH = Path(__file__).resolve().parent / "BENCHMARKS.template.md"
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")

MEGABYTE = 1_000_000
IMPORT_BUDGET_MS = 150.0
# Share of prod invocations that are cold starts, as the cost model assumes.
PROD_COLD_START_SHARE = TRAFFIC["prod"].cold_start_share


@dataclass(frozen=True)
class Target:
    """A figure's goal: ``value <= limit`` (``at_most``) or ``value >= limit``."""

    figure: str
    description: str
    limit: float | bool
    at_most: bool = True
    unit: str = ""

    def met_by(self, value: Any) -> bool:
        if isinstance(self.limit, bool):
            return bool(value) is self.limit
        return float(value) <= self.limit if self.at_most else float(value) >= self.limit


TARGETS = (
    Target("warm_p50_ratio", "warm handler p50 / bare insert p50", 2.0),
    Target("warm_p99_ratio", "warm handler p99 / bare insert p99", 3.0),
    Target("rejection_database_untouched", "invalid signature handled without a database statement", True),
    Target("import_ms", "handler module import (fresh interpreter, median)", IMPORT_BUDGET_MS, unit="ms"),
    Target("cold_start_ratio", "cold start / naive baseline cold start (medians)", 0.7),
    Target("concurrency_ratio", "events per second / bare inserts per second, 8 workers", 0.5, at_most=False),
    Target("concurrency_exactly_once", "one row per event id after the concurrent run", True),
    Target("package_zipped_bytes", "function package, zipped", 5 * MEGABYTE, unit="bytes"),
    Target("cost_dev_usd", "dev estimate per month", 30.0, unit="USD"),
)


def headline_figures(details: dict[str, Any]) -> dict[str, Any]:
    """Return the flat figures by name that results.json leads with (for comparing runs)."""
    latency = details["latency"]
    cold = details["cold_start"]
    concurrency = details["concurrency"]
    package = details["package"]
    cost = details["cost"]["monthly_total_usd"]
    return {
        "warm_p50_ratio": latency["warm_p50_ratio"],
        "warm_p99_ratio": latency["warm_p99_ratio"],
        "warm_new_event_p50_us": latency["new_event_us"]["p50"],
        "warm_new_event_p99_us": latency["new_event_us"]["p99"],
        "floor_insert_p50_us": latency["floor_insert_us"]["p50"],
        "floor_insert_p99_us": latency["floor_insert_us"]["p99"],
        "warm_samples": latency["new_event_us"]["count"],
        "duplicate_p50_ratio": latency["duplicate_p50_ratio"],
        "duplicate_p99_ratio": latency["duplicate_p99_ratio"],
        "duplicate_p50_ratio_new_row_floor": latency["duplicate_p50_ratio_new_row_floor"],
        "duplicate_p50_us": latency["duplicate_us"]["p50"],
        "rejection_p50_us": latency["rejection_us"]["p50"],
        "rejection_p99_us": latency["rejection_us"]["p99"],
        "rejection_database_untouched": latency["rejection_database_untouched"],
        "import_ms": cold["function"]["import_ms"],
        "cold_start_ms": cold["function"]["cold_start_ms"],
        "baseline_import_ms": cold["baseline"]["import_ms"],
        "baseline_cold_start_ms": cold["baseline"]["cold_start_ms"],
        "cold_start_ratio": cold["cold_start_ratio"],
        "import_ms_no_bytecode": cold["import_ms_no_bytecode"],
        "concurrency_events_per_second": concurrency["handler_events_per_second"],
        "concurrency_floor_inserts_per_second": concurrency["floor_inserts_per_second"],
        "concurrency_ratio": concurrency["concurrency_ratio"],
        "concurrency_exactly_once": concurrency["exactly_once"],
        "package_zipped_bytes": package["zipped_bytes"],
        "package_unzipped_bytes": package["unzipped_bytes"],
        "cost_dev_usd": cost["dev"],
        "cost_staging_usd": cost["staging"],
        "cost_prod_usd": cost["prod"],
    }


def evaluate_targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Return each target with the measured value and whether it was met."""
    return [
        {
            "figure": target.figure,
            "description": target.description,
            "value": figures[target.figure],
            "limit": target.limit,
            "comparison": "<=" if target.at_most else ">=",
            "met": target.met_by(figures[target.figure]),
        }
        for target in TARGETS
    ]


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:,.2f}"
        if abs(value) < 1000:
            return f"{value:,.1f}"
        return f"{value:,.0f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    separators = ["---:" if mark == "r" else "---" for mark in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(separators) + " |"]
    lines += ["| " + " | ".join(_number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _targets_table(targets: list[dict[str, Any]]) -> str:
    rows = []
    for target in targets:
        limit = target["limit"]
        if isinstance(limit, bool):
            limit_text = _number(limit)
        else:
            limit_text = f"{target['comparison']} {_number(limit)}"
        rows.append(
            [f"`{target['figure']}`", target["description"], target["value"], limit_text, "pass" if target["met"] else "**miss**"]
        )
    return _table(["figure", "what", "measured", "target", "result"], rows, "llrrl")


def _misses(targets: list[dict[str, Any]], causes: dict[str, str]) -> str:
    missed = [target for target in targets if not target["met"]]
    if not missed:
        return "Every target was met in this run."
    lines = []
    for target in missed:
        cause = causes.get(target["figure"], "see the figures below")
        lines.append(f"- `{target['figure']}` = {_number(target['value'])} misses {target['comparison']} "
                     f"{_number(target['limit'])}: {cause}")
    return "\n".join(lines)


def _latency_table(latency: dict[str, Any]) -> str:
    def row(name: str, key: str) -> list[Any]:
        series = latency[key]
        return [name, series["p50"], series["p99"], series["mean"], series["count"]]

    return _table(
        ["series (microseconds)", "p50", "p99", "mean", "samples"],
        [
            row("handler, new event", "new_event_us"),
            row("bare insert, new row (floor)", "floor_insert_us"),
            row("handler, duplicate event", "duplicate_us"),
            row("bare insert, existing row (floor)", "floor_conflict_us"),
            row("handler, invalid signature", "rejection_us"),
        ],
    )


def _ratios(latency: dict[str, Any]) -> str:
    return (
        f"Ratios: new event {_number(latency['warm_p50_ratio'])} at p50 and {_number(latency['warm_p99_ratio'])} "
        f"at p99; duplicate {_number(latency['duplicate_p50_ratio'])} at p50 and "
        f"{_number(latency['duplicate_p99_ratio'])} at p99 over an insert that conflicts (a conflict writes and "
        f"flushes nothing, so that floor is small), or {_number(latency['duplicate_p50_ratio_new_row_floor'])} at "
        "p50 over the new-row floor."
    )


def _round_trips(round_trips: dict[str, float]) -> str:
    return (
        "Database round trips per call, counted at pg8000's socket over 50 untimed calls: "
        f"new event {_number(round_trips['new_event'])}, duplicate {_number(round_trips['duplicate'])}, "
        f"invalid signature {_number(round_trips['rejection'])}, bare insert {_number(round_trips['floor_insert'])}."
    )


def _latency_split(latency: dict[str, Any]) -> str:
    split = latency["new_event_split"]
    floor_p50 = latency["floor_insert_us"]["p50"]
    if split["database_us"] is None:
        head = (
            f"An untimed pass over {split['events']} new events took {_number(split['handler_us'])} us per event; "
            "the function no longer runs its statements through pg8000's PreparedStatement.run, so the split "
            "between database and process is not available."
        )
    else:
        head = (
            f"Where a new event's time goes, from an untimed pass over {split['events']} new events: "
            f"{_number(split['handler_us'])} us per event on average, of which {_number(split['database_us'])} us "
            f"inside the database statement (send, server work, receive; the floor's one-column insert takes "
            f"{_number(floor_p50)} us at p50) and {_number(split['in_process_us'])} us in the handler's own process. "
            "The Python functions with the most own time (cProfile, another untimed pass):"
        )
    rows = [[f"`{row['function']}`", row["own_us_per_event"]] for row in latency["new_event_profile"]]
    return head + "\n\n" + _table(["function", "own us per event (under cProfile)"], rows)


def _deferred(cold: dict[str, Any]) -> str:
    import sys

    packages = [name for name in cold["function"]["deferred_packages"] if name not in sys.stdlib_module_names]
    if not packages:
        return "The handler imports everything it needs when its module is imported."
    return (
        "The handler defers some imports to its first event, so compare cold starts rather than imports alone: "
        "while handling it, the function first imports " + ", ".join(f"`{name}`" for name in packages) + "."
    )


def _cold_table(cold: dict[str, Any]) -> str:
    function, baseline = cold["function"], cold["baseline"]
    return _table(
        ["median of fresh processes (ms)", "this function", "naive baseline", "ratio"],
        [
            ["import", function["import_ms"], baseline["import_ms"], cold["import_ratio"]],
            ["first event (deferred imports, secrets, connect, store)", function["first_event_ms"], baseline["first_event_ms"], ""],
            ["cold start (import + first event)", function["cold_start_ms"], baseline["cold_start_ms"], cold["cold_start_ratio"]],
            ["modules loaded", function["modules_loaded"], baseline["modules_loaded"], ""],
        ],
    )


def _importtime_table(breakdown: dict[str, Any]) -> str:
    rows = [
        [f"`{group['package']}`" + (" (stdlib)" if group["stdlib"] else ""), group["ms"], group["modules"]]
        for group in breakdown["groups"]
    ]
    rows.append(["`payment_webhook` itself (own modules)", breakdown["own_ms"], ""])
    return _table(["imported through", "ms (with -X importtime)", "modules"], rows)


def _imports_table(imports: dict[str, Any]) -> str:
    rows = [[f"`{item['module']}`", item["description"], item["median_ms"], item["min_ms"]] for item in imports.values()]
    runs = next(iter(imports.values()))["runs"]
    return _table(["module", "what", f"median ms ({runs} runs)", "min ms"], rows, "llrr")


def _concurrency_table(concurrency: dict[str, Any]) -> str:
    outcomes = concurrency["handler_outcomes"]
    return _table(
        ["figure", "value"],
        [
            ["worker processes", concurrency["workers"]],
            ["deliveries (unique + duplicates)", f"{concurrency['deliveries']:,} ({concurrency['unique_events']:,} + {concurrency['duplicate_deliveries']:,})"],
            ["handler, events per second", concurrency["handler_events_per_second"]],
            ["bare inserts per second (before, after)", f"{_number(concurrency['floor_inserts_per_second'])} "
             f"({', '.join(_number(value) for value in concurrency['floor_inserts_per_second_before_after'])})"],
            ["ratio", concurrency["concurrency_ratio"]],
            ["answers stored / duplicate", f"{outcomes.get('stored', 0):,} / {outcomes.get('duplicate', 0):,}"],
            ["rows in webhook_events (distinct ids)", f"{concurrency['rows_stored']:,} ({concurrency['distinct_event_ids']:,})"],
            ["rows in payments", concurrency["payment_rows"]],
            [
                "CPU per delivery, workers + PostgreSQL (us): handler",
                _cpu(concurrency["cpu_per_delivery"]["handler"]),
            ],
            [
                "CPU per delivery, workers + PostgreSQL (us): bare insert before, after",
                _cpu(concurrency["cpu_per_delivery"]["floor_before"])
                + ", "
                + _cpu(concurrency["cpu_per_delivery"]["floor_after"]),
            ],
            ["exactly once", concurrency["exactly_once"]],
        ],
        "lr",
    )


def _cpu(figures: dict[str, float]) -> str:
    return f"{_number(figures['workers_us'])} + {_number(figures['postgres_us'])}"


def _package_table(package: dict[str, Any]) -> str:
    loaded = package.get("loaded_by_cold_start", {})
    rows = [["whole package", package["unzipped_bytes"], package["zipped_bytes"], sum(loaded.values())]]
    rows += [
        [f"`{item['entry']}`", item["unzipped_bytes"], item["zipped_bytes"], loaded.get(item["entry"], 0)]
        for item in package["largest"]
    ]
    return _table(["entry", "unzipped bytes", "zipped bytes", "source bytes a cold start loads"], rows)


def _drivers_table(drivers: dict[str, Any], imports: dict[str, Any]) -> str:
    rows = []
    for name, import_key in (("pg8000", "pg8000"), ("psycopg", "psycopg")):
        driver = drivers[name]
        rows.append(
            [
                f"{name} {driver['version']}",
                imports[import_key]["median_ms"],
                driver["insert_us"]["p50"],
                driver["insert_us"]["p99"],
                driver["connect_ms"]["p50"],
            ]
        )
    return _table(["driver", "import ms", "insert p50 us", "insert p99 us", "connect p50 ms"], rows)


def _secrets_table(secrets: dict[str, Any]) -> str:
    rows = []
    for name, label in (("boto3", "boto3"), ("function", "function's SigV4 client")):
        figures = secrets[name]
        rows.append([label, figures["import_ms"], figures["client_ms"], figures["first_call_ms"], figures["total_ms"], figures["warm_call_ms"]])
    return _table(["client", "import ms", "client ms", "first call ms", "total ms", "warm call ms"], rows)


def _adapters_table(adapters: dict[str, Any], imports: dict[str, Any]) -> str:
    return _table(
        ["adapter", "import ms", "per request p50 us", "per request p99 us"],
        [
            [
                "Powertools `APIGatewayHttpResolver`",
                imports["powertools_event_handler"]["median_ms"],
                adapters["powertools_resolver_us"]["p50"],
                adapters["powertools_resolver_us"]["p99"],
            ],
            [
                "function's `adapt_http_api_event` + `build_response`",
                "in the handler module",
                adapters["function_adapter_us"]["p50"],
                adapters["function_adapter_us"]["p99"],
            ],
        ],
    )


def _machine_table(machine: dict[str, Any]) -> str:
    settings = ", ".join(f"{name}={value}" for name, value in machine["postgres_settings"].items())
    return _table(
        ["", ""],
        [
            ["date", machine["date_utc"]],
            ["cores (`nproc`)", machine["nproc"]],
            ["CPU", machine["cpu_model"]],
            ["memory", f"{machine['memory_gib']} GiB"],
            ["kernel, architecture", f"{machine['kernel']}, {machine['machine']}"],
            ["Python", machine["python"]],
            ["PostgreSQL", f"{machine['postgres_version']} ({settings})"],
            ["load average (1 min) at start, at end", f"{machine['load_average_at_start']}, {machine['load_average_at_end']}"],
        ],
        "ll",
    )


def _verdicts(details: dict[str, Any]) -> dict[str, str]:
    """Return one paragraph per comparison that states whether the figures confirm the choice."""
    imports = details["imports"]
    drivers = details["drivers"]
    pg8000_p50 = drivers["pg8000"]["insert_us"]["p50"]
    psycopg_p50 = drivers["psycopg"]["insert_us"]["p50"]
    pg8000_import = imports["pg8000"]["median_ms"]
    psycopg_import = imports["psycopg"]["median_ms"]
    pg8000_connect = drivers["pg8000"]["connect_ms"]["p50"]
    psycopg_connect = drivers["psycopg"]["connect_ms"]["p50"]
    gap_us = pg8000_p50 - psycopg_p50
    # What a cold start pays for each driver: its import and one connect.
    import_gap_ms = (psycopg_import + psycopg_connect) - (pg8000_import + pg8000_connect)
    trips = max(details["latency"]["round_trips_per_call"]["new_event"], 1.0)
    events_per_environment = 1.0 / PROD_COLD_START_SHARE
    figures = (
        f"Per round trip pg8000 takes {_number(pg8000_p50)} us at p50 and psycopg {_number(psycopg_p50)} us. "
        f"A cold start pays import plus connect: {_number(pg8000_import)} + {_number(pg8000_connect)} ms for "
        f"pg8000, {_number(psycopg_import)} + {_number(psycopg_connect)} ms for psycopg."
    )
    if gap_us <= 0.2 * psycopg_p50 and import_gap_ms >= 0:
        driver = (
            f"{figures} **Confirmed: pg8000.** Its round trip is within 20% of psycopg's, its cold-start cost is "
            f"{_number(import_gap_ms)} ms lower, and it keeps the arm64 package free of binary wheels."
        )
    elif import_gap_ms > 0:
        break_even = import_gap_ms * 1000.0 / (gap_us * trips)
        if break_even > events_per_environment:
            driver = (
                f"{figures} psycopg's faster round trip pays back its slower cold start only after "
                f"{break_even:,.0f} events in one execution environment; the cost model's prod traffic "
                f"({PROD_COLD_START_SHARE:.0%} of invocations cold) gives about {events_per_environment:,.0f}. "
                "**Confirmed on balance: pg8000**, which also keeps the arm64 package free of binary wheels. "
                "Revisit when warm traffic per execution environment grows past the break-even."
            )
        else:
            driver = (
                f"{figures} psycopg's faster round trip pays back its slower cold start after {break_even:,.0f} "
                f"events in one execution environment, fewer than the {events_per_environment:,.0f} that the cost "
                "model's prod traffic gives. **Overturned on time: psycopg is faster overall.** Switching needs "
                "psycopg's arm64 binary wheel in the package, which this x86_64 host cannot run, so the local "
                "stack would run the sources instead of the built package; the lead decides."
            )
    elif gap_us <= 0.2 * psycopg_p50:
        driver = (
            f"{figures} **Overturned on cold start: psycopg costs {_number(-import_gap_ms)} ms less per cold start** "
            "and its round trip is as fast. Switching needs psycopg's arm64 binary wheel in the package, which "
            "this x86_64 host cannot run, so the local stack would run the sources instead of the built package; "
            "the lead decides."
        )
    else:
        driver = f"{figures} **Overturned: psycopg is faster both per cold start and per round trip.**"

    adapters = details["adapters"]
    resolver_import = imports["powertools_event_handler"]["median_ms"]
    resolver_p50 = adapters["powertools_resolver_us"]["p50"]
    adapter_p50 = adapters["function_adapter_us"]["p50"]
    if resolver_import > 0.1 * IMPORT_BUDGET_MS and adapter_p50 <= resolver_p50:
        adapter = (
            f"**Confirmed: the hand-written adapter.** Powertools' event handler costs {_number(resolver_import)} ms "
            f"of import ({resolver_import / IMPORT_BUDGET_MS:.0%} of the {IMPORT_BUDGET_MS:.0f} ms budget) and "
            f"{_number(resolver_p50)} us per request against {_number(adapter_p50)} us, for one route."
        )
    else:
        adapter = (
            f"**Overturned: Powertools' event handler is cheap enough** ({_number(resolver_import)} ms import, "
            f"{_number(resolver_p50)} us per request against {_number(adapter_p50)} us)."
        )

    secrets = details["secret_fetch"]
    boto3_total = secrets["boto3"]["total_ms"]
    function_total = secrets["function"]["total_ms"]
    if function_total < boto3_total:
        secret = (
            f"**Confirmed: the stdlib SigV4 client.** The first secret read in a fresh process takes "
            f"{_number(function_total)} ms with it against {_number(boto3_total)} ms with boto3, of which boto3's "
            f"import is {_number(secrets['boto3']['import_ms'])} ms and its client {_number(secrets['boto3']['client_ms'])} ms."
        )
    else:
        secret = (
            f"**Overturned: boto3 is not slower here** ({_number(boto3_total)} ms against {_number(function_total)} ms "
            "for the first read in a fresh process)."
        )

    cold = details["cold_start"]
    function_import = cold["function"]["import_ms"]
    baseline_import = cold["baseline"]["import_ms"]
    xray_import = imports["aws_xray_sdk"]["median_ms"]
    lazy = (
        f"The handler module imports in {_number(function_import)} ms against {_number(baseline_import)} ms for "
        f"the eager baseline ({cold['function']['modules_loaded']:,} against {cold['baseline']['modules_loaded']:,} "
        f"modules loaded). aws-xray-sdk alone takes {_number(xray_import)} ms to import, which is why tracing is "
        "Lambda's active tracing and the SDK is not bundled. "
        + (
            "**Confirmed: no eager import of boto3, aws-xray-sdk or the event handler.**"
            if function_import <= IMPORT_BUDGET_MS
            else f"**The import budget of {IMPORT_BUDGET_MS:.0f} ms is missed**; the breakdown above shows what to defer next."
        )
    )
    return {"driver_verdict": driver, "adapter_verdict": adapter, "secrets_verdict": secret, "lazy_verdict": lazy}


def _import_dominant(breakdown: dict[str, Any]) -> str:
    groups = breakdown["groups"][:3]
    parts = [f"`{group['package']}` {_number(group['ms'])} ms" for group in groups]
    return (
        f"Under `-X importtime` the handler's import takes {_number(breakdown['total_ms'])} ms (the tracing itself "
        f"adds some); the largest shares come through " + ", ".join(parts) + "."
    )


def _package_dominant(package: dict[str, Any]) -> str:
    largest = package["largest"][0]
    share = largest["zipped_bytes"] / package["zipped_bytes"]
    return (
        f"`{largest['entry']}` dominates: {_number(largest['unzipped_bytes'])} bytes unzipped, "
        f"{_number(largest['zipped_bytes'])} zipped ({share:.0%} of the zip)."
    )


def render_markdown(results: dict[str, Any], cost_markdown: str, miss_causes: dict[str, str]) -> str:
    """Fill bench/BENCHMARKS.template.md with one run's figures.

    Raises
    ------
    KeyError
        The template names a placeholder this module does not fill.
    """
    details = results["details"]
    values = {
        "command": results["command"],
        "mode_note": results["mode_note"],
        "machine_table": _machine_table(results["machine"]),
        "function_code": results["function_code"],
        "targets_table": _targets_table(results["targets"]),
        "misses": _misses(results["targets"], miss_causes),
        "latency_table": _latency_table(details["latency"]),
        "latency_ratios": _ratios(details["latency"]),
        "rejection_sessions": str(details["latency"]["rejection_sessions_checked"]),
        "round_trips": _round_trips(details["latency"]["round_trips_per_call"]),
        "latency_split": _latency_split(details["latency"]),
        "cold_table": _cold_table(details["cold_start"]),
        "deferred_imports": _deferred(details["cold_start"]),
        "cold_runs": str(details["cold_start"]["runs"]),
        "import_no_bytecode": _number(details["cold_start"]["import_ms_no_bytecode"]),
        "importtime_table": _importtime_table(details["importtime"]),
        "import_dominant": _import_dominant(details["importtime"]),
        "imports_table": _imports_table(details["imports"]),
        "concurrency_table": _concurrency_table(details["concurrency"]),
        "package_table": _package_table(details["package"]),
        "package_dominant": _package_dominant(details["package"]),
        "drivers_table": _drivers_table(details["drivers"], details["imports"]),
        "secrets_table": _secrets_table(details["secret_fetch"]),
        "adapters_table": _adapters_table(details["adapters"], details["imports"]),
        "cost_tables": cost_markdown,
        **_verdicts(details),
    }
    template = TEMPLATE_PATH.read_text()

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return PLACEHOLDER.sub(substitute, template)
