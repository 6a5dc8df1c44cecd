"""Render docs/RELIABILITY.md from the figures the reliability and fuzz tests recorded.

Run the tests first (``make test``, ``make reliability``, or pytest on
``tests/reliability`` and ``tests/unit/test_fuzz_handler.py``), then
``python -m tests.reliability.report``. Each scenario's section shows the figures of the
latest run that recorded it, with that run's command, date, revision and machine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.reliability.figures import FIGURES_FILE, REPOSITORY_ROOT, read_figures

DOC_PATH = REPOSITORY_ROOT / "docs" / "RELIABILITY.md"


@dataclass(frozen=True)
class Scenario:
    """How one recorded scenario appears in the document."""

    key: str
    title: str
    test: str
    description: str
    rows: tuple[tuple[str, str], ...]


SCENARIOS = (
    Scenario(
        "fuzz_arbitrary_requests",
        "Fuzz: arbitrary requests",
        "tests/unit/test_fuzz_handler.py::test_arbitrary_requests_never_500",
        "A well-formed signed request with one part, or every part, made random. The parts are the body "
        "(bytes, text, hostile events), the transport (invalid base64, a text body flagged as base64, no body, "
        "a non-string body), the Stripe-Signature elements, duplicate signature headers in other letter cases, "
        "other headers, and the event's shape. Passes when every response is 200, 400 or 413 with the "
        "contract's body, nothing is logged at ERROR, and a rejection writes no row. Only a request with a "
        "correct v1 for a fresh t may be accepted, and an unchanged request must be stored.",
        (
            ("examples", "examples"),
            ("responses by HTTP status", "statuses"),
            ("rows stored, each compared with the sent JSON", "rows_compared_with_sent_json"),
            ("rows written for rejected requests", "rows_for_rejected_requests"),
        ),
    ),
    Scenario(
        "fuzz_signed_hostile_events",
        "Fuzz: validly signed hostile events",
        "tests/unit/test_fuzz_handler.py::test_signed_hostile_events_rejected_or_stored",
        "Validly signed events with at most one defect. The defects include ids and types of 0, 1, 255, 256 "
        "and 10,000 characters and every JSON kind in place of a field. Others are created negative, float, "
        "bool, 2**63 and 10**400, NUL characters and lone surrogates in keys and values at depth, duplicate "
        "keys, invalid UTF-8, and payment fields beyond bigint. The events also carry content the contract allows: numbers up to PostgreSQL's numeric limits, "
        "nesting 1 to 2,000 deep, arrays up to 600,000 elements, keys and strings of 10,000 and 100,000 "
        "characters. An oracle from the contract decides store, reject naming the field, 413, or either.",
        (
            ("examples", "examples"),
            ("oracle verdicts", "verdicts"),
            ("responses by HTTP status", "statuses"),
            ("rows stored, each compared with the sent JSON", "rows_compared_with_sent_json"),
            ("rows written for rejected requests", "rows_for_rejected_requests"),
        ),
    ),
    Scenario(
        "fuzz_signed_catalogue",
        "Fuzz: every listed hostile value",
        "tests/unit/test_fuzz_handler.py::test_signed_hostile_catalogue",
        "Every hostile value of the fuzz module's lists once as text and once base64-encoded, so none depends "
        "on what the properties happen to draw. The second delivery of each body is a duplicate.",
        (
            ("deliveries", "examples"),
            ("oracle verdicts", "verdicts"),
            ("responses by HTTP status", "statuses"),
            ("rows stored, each compared with the sent JSON", "rows_compared_with_sent_json"),
            ("rows written for rejected requests", "rows_for_rejected_requests"),
        ),
    ),
    Scenario(
        "database_outage",
        "Database outage during traffic",
        "tests/reliability/test_database_outage.py::test_outage_every_event_stored_once",
        "Four senders deliver 500 events (payment intents through created, processing and succeeded, then "
        "refunded, plus other events) over HTTP to the local stack's four warm workers and retry every non-2xx "
        "response with a backoff from 50 ms to 500 ms. PostgreSQL is stopped twice during the run and started "
        "again after 3 s. Passes when every event has exactly one row, every payment row matches what its "
        "events imply, no response is other than 200 or 503 storage_unavailable, and the same worker processes "
        "serve before and after.",
        (
            ("faults", "fault_description"),
            ("responses by HTTP status", "statuses"),
            ("error codes of the 503 responses", "error_codes"),
            ("accepting responses", "answers"),
            ("events with two `stored` responses", "events_answered_stored_twice"),
            ("payment rows that do not match their events", "partial_payment_rows"),
            ("worker processes replaced", "worker_processes_replaced"),
            ("500 responses from the gateway", "gateway_500s"),
            ("duration of the traffic (s)", "elapsed_seconds"),
        ),
    ),
    Scenario(
        "connection_drop_pg_terminate_backend",
        "Connection dropped between invocations: pg_terminate_backend",
        "tests/reliability/test_connection_drops.py::test_dropped_connection_next_invocation_succeeds",
        "While the four workers are idle with open sessions, their sessions are ended with "
        "pg_terminate_backend; then eight deliveries, one at a time and without retries, reach every worker "
        "twice. Three rounds. Passes when every delivery is stored on its first attempt and every worker "
        "replaced its session.",
        (
            ("sessions dropped and replaced", "sessions_dropped"),
            ("deliveries that failed their first attempt", "failed_first_attempts"),
            ("worker processes replaced", "worker_processes_replaced"),
        ),
    ),
    Scenario(
        "connection_drop_restart_fast",
        "Connection dropped between invocations: server restart (fast shutdown)",
        "tests/reliability/test_connection_drops.py::test_dropped_connection_next_invocation_succeeds",
        "As above, with `pg_ctl stop -m fast` and a start in place of pg_terminate_backend.",
        (
            ("sessions dropped and replaced", "sessions_dropped"),
            ("deliveries that failed their first attempt", "failed_first_attempts"),
            ("worker processes replaced", "worker_processes_replaced"),
        ),
    ),
    Scenario(
        "connection_drop_restart_immediate",
        "Connection dropped between invocations: server restart (immediate shutdown)",
        "tests/reliability/test_connection_drops.py::test_dropped_connection_next_invocation_succeeds",
        "As above, with `pg_ctl stop -m immediate` (sessions cut without a message, crash recovery on start).",
        (
            ("sessions dropped and replaced", "sessions_dropped"),
            ("deliveries that failed their first attempt", "failed_first_attempts"),
            ("worker processes replaced", "worker_processes_replaced"),
        ),
    ),
    Scenario(
        "database_secret_rotation",
        "Database secret rotated during traffic",
        "tests/reliability/test_secret_rotation.py::test_database_rotation_during_traffic",
        "Four retrying senders deliver 600 events. Three times during the run the role gets a new password, "
        "the secret gets the new value (the order RDS follows), and the function's sessions are ended so every "
        "worker reconnects. Re-reads are GetSecretValue calls for the database secret as moto's server "
        "received them, counted without patching the function. Passes when no delivery fails twice and the "
        "re-reads are at least one and at most one per worker per rotation.",
        (
            ("sessions ended", "sessions_ended"),
            ("re-reads of the database secret", "database_secret_rereads"),
            ("deliveries that failed once", "deliveries_failed_once"),
            ("deliveries that failed twice", "deliveries_failed_twice"),
            ("responses by HTTP status", "statuses"),
            ("worker processes replaced", "worker_processes_replaced"),
        ),
    ),
    Scenario(
        "signing_secret_rotation",
        "Signing secret rotated",
        "tests/reliability/test_secret_rotation.py::test_signing_rotation_both_then_new_only",
        "The handler in this process with a clock the test moves. The secret goes from the old value to "
        "[new, old], then to the new value alone; the clock moves past the function's 60 s re-read interval "
        "after each change. Passes when both values are accepted while both are stored and the old one is "
        "rejected (400 invalid_signature, no row) after its removal.",
        (
            ("responses", "statuses"),
            ("rows written for the old secret after its removal", "rows_stored_for_old_secret_after_removal"),
        ),
    ),
    Scenario(
        "replay",
        "Replay of captured requests",
        "tests/reliability/test_replay.py::test_replay_within_and_after_tolerance",
        "Forty requests are captured as sent, signed 296 s before delivery (4 s short of the 300 s tolerance). "
        "Each is replayed byte for byte at once, replayed with a changed event id under the captured header, "
        "and replayed byte for byte once the tolerance has passed.",
        (
            ("original deliveries", "originals"),
            ("replays within the tolerance", "replays_within_tolerance"),
            ("replays with a changed body", "replays_with_changed_body"),
            ("replays after the tolerance", "replays_after_tolerance"),
            ("rows for the forged ids", "rows_for_forged_ids"),
        ),
    ),
    Scenario(
        "load",
        "Load over HTTP",
        "tests/reliability/test_load.py::test_load_duplicates_one_row_each",
        "Sixteen senders share 2,000 deliveries of 1,500 events over HTTP to the local stack's four workers, "
        "without retries. 500 deliveries are duplicates: half directly behind their original in the queue, so "
        "two senders deliver the same event at the same moment, half later.",
        (
            ("senders, function workers", "senders"),
            ("responses by HTTP status", "statuses"),
            ("accepting responses", "answers"),
            ("5xx responses", "server_errors"),
            ("events with two `stored` responses", "events_answered_stored_twice"),
            ("payment rows that do not match their events", "partial_payment_rows"),
            ("duration (s)", "elapsed_seconds"),
        ),
    ),
)

INTRODUCTION = """\
# Reliability

A payments receiver is judged on its worst day. Each failure mode below is a test that
fails when the function loses, doubles or half-writes an event, responds with 500, or needs
a new process to recover. The figures on this page come from runs of those tests; every section
names the command, revision, date and machine of its run.

## How to run

| command | what runs |
| --- | --- |
| `make test` | everything, including this tier (what CI runs through `.ci/run`) |
| `make reliability` | `tests/reliability` only: outage, dropped connections, rotations, replay, load |
| `.venv/bin/python -m pytest tests/unit/test_fuzz_handler.py` | the fuzz tests only |
| `.venv/bin/python -m tests.reliability.report` | rewrites this page from `.local/reliability-figures.json` |

The tests write their figures to `.local/reliability-figures.json` (not committed) when
their assertions have run, so a failing run still leaves its figures. This page is
generated by `tests/reliability/report.py`; edit the text there.

The HTTP scenarios run against a local stack (gateway, four warm function workers, moto's
Secrets Manager) on an embedded PostgreSQL 16 that only this tier uses, so stopping it
disturbs no other test. The fuzz tests call the handler in the test process against a real
migrated database. The fuzz properties use the Hypothesis profile `webhook-fuzz-ci`
(derandomized, `deadline=None`), so every run tries the same examples;
`WEBHOOK_FUZZ_EXAMPLES=5000` runs more of them.

"Rows lost" counts events whose delivery was accepted, or had to be, but that have no row.
"Rows doubled" counts event ids with more than one row. The primary key makes a second row
impossible, so each scenario also counts the events that got a `stored` response more
than once, which is how a doubled payment update would show.
"""


def format_value(value: Any) -> str:
    """Return a figure as table text: counters as ``key: count`` pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {count:,}" if isinstance(count, int) else f"{key}: {count}" for key, count in value.items())
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def rows_lost(figures: dict[str, Any]) -> str:
    value = figures.get("rows_lost")
    return "not counted" if value is None else format_value(value)


def rows_doubled(figures: dict[str, Any]) -> str:
    value = figures.get("rows_doubled")
    return "not counted" if value is None else format_value(value)


def summary_table(figures: dict[str, Any]) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| scenario | result | deliveries tried | faults injected | rows lost | rows doubled |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario in SCENARIOS:
        entry = figures.get(scenario.key)
        if entry is None:
            lines.append(f"| {scenario.title} | not run | | | | |")
            continue
        lines.append(
            f"| [{scenario.title}](#{anchor(scenario.title)}) | {result_text(entry)} "
            f"| {format_value(entry.get('deliveries_tried', ''))} "
            f"| {format_value(entry.get('faults_injected', ''))} | {rows_lost(entry)} | {rows_doubled(entry)} |"
        )
    lines += [
        "",
        "The fuzz tests do not count rows lost or doubled in these terms. They check every must-store "
        "example's row against the sent JSON and every rejection's row count instead (see their sections).",
        "",
    ]
    return lines


def result_text(entry: dict[str, Any]) -> str:
    result = str(entry.get("result", "unknown"))
    return f"**{result}**" if result != "passed" else result


def anchor(title: str) -> str:
    """Return the GitHub anchor of a heading."""
    anchor_text = "".join(character for character in title.lower() if character.isalnum() or character in " -")
    return anchor_text.replace(" ", "-")


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('nproc')} cores (`nproc`), {machine.get('cpu_model')}, {machine.get('memory_gib')} GiB, "
        f"kernel {machine.get('kernel')} {machine.get('machine')}, Python {machine.get('python')}"
    )


def scenario_section(scenario: Scenario, entry: dict[str, Any] | None) -> list[str]:
    lines = [f"## {scenario.title}", "", f"Test: `{scenario.test}`", "", scenario.description, ""]
    if entry is None:
        return [*lines, "No figures recorded yet: run the test, then this script.", ""]
    lines += [
        "| figure | value |",
        "| --- | --- |",
        f"| result | {result_text(entry)} |",
        f"| deliveries tried | {format_value(entry.get('deliveries_tried', ''))} |",
        f"| faults injected | {format_value(entry.get('faults_injected', ''))} |",
    ]
    if "rows_lost" in entry:
        lines.append(f"| rows lost | {format_value(entry['rows_lost'])} |")
    if "rows_doubled" in entry:
        lines.append(f"| rows doubled | {format_value(entry['rows_doubled'])} |")
    for label, key in scenario.rows:
        if key not in entry:
            continue
        value = format_value(entry[key])
        if key == "senders" and "function_workers" in entry:
            value = f"{entry['senders']}, {entry['function_workers']}"
        lines.append(f"| {label} | {value} |")
    lines += [
        "",
        f"Command: `{entry.get('command', 'unknown')}`. Recorded {entry.get('recorded_at_utc', 'unknown')} at "
        f"revision `{entry.get('revision', 'unknown')}` on {machine_line(entry.get('machine', {}))}.",
    ]
    if "function_code" in entry:
        lines.append(f"Function code: {entry['function_code']}.")
    lines.append("")
    return lines


def render(figures: dict[str, Any], findings: str) -> str:
    """Return the whole document for ``figures``."""
    lines = [INTRODUCTION, *summary_table(figures)]
    if findings:
        lines += [findings.rstrip(), ""]
    for scenario in SCENARIOS:
        lines += scenario_section(scenario, figures.get(scenario.key))
    return "\n".join(lines).rstrip() + "\n"


FINDINGS_PATH = Path(__file__).with_name("findings.md")


def main(argv: list[str] | None = None) -> int:
    """Write docs/RELIABILITY.md (or the file given) from the recorded figures."""
    parser = argparse.ArgumentParser(description="Render docs/RELIABILITY.md from .local/reliability-figures.json")
    parser.add_argument("--figures", type=Path, default=FIGURES_FILE, help="figures file the tests wrote")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help="document to write")
    arguments = parser.parse_args(argv)
    figures = read_figures(arguments.figures)
    if not figures:
        print(f"{arguments.figures} has no figures: run the reliability and fuzz tests first", file=sys.stderr)
        return 1
    findings = FINDINGS_PATH.read_text() if FINDINGS_PATH.exists() else ""
    arguments.output.write_text(render(figures, findings))
    print(f"wrote {arguments.output} from {arguments.figures} ({len(figures)} scenarios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
