"""``python -m local_stack``: the local stack that ``make local`` runs.

Starts PostgreSQL, Secrets Manager, the migrations, the function's workers and the HTTP
API on 127.0.0.1, replays ``events/`` with a table of expected and actual responses, then
serves until Ctrl-C (SIGINT) or SIGTERM and stops everything it started.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from local_stack.replay import format_table, replay_events
from local_stack.signing import MANIFEST_NAME, EventFileError
from local_stack.runtime import display_path
from local_stack.stack import PROJECT_ROOT, SIGNATURE_TOLERANCE_SECONDS, LocalStack, LocalStackError

EVENTS_DIR = PROJECT_ROOT / "events"
DEFAULT_PORT = 3000
DEFAULT_WORKERS = 4


class _ComponentFormatter(logging.Formatter):
    """Prefix each log line with the last part of its logger name (``gateway: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        record.component = record.name.rsplit(".", 1)[-1]
        return super().format(record)


def report(line: str) -> None:
    """Print one progress line at once, also when stdout is a pipe."""
    print(line, flush=True)


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description="Run the payment webhook stack on 127.0.0.1: PostgreSQL, Secrets Manager (moto), "
        "the function and its HTTP API. Replays events/, then serves until Ctrl-C.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"HTTP port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"warm function workers, which is the concurrency limit (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--no-build-check",
        action="store_true",
        help="run the sources in src/ with the virtual environment's packages instead of .aws-sam/build",
    )
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="stop after the replay; exit 1 when a response differs from the manifest",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=PROJECT_ROOT / ".local",
        help="folder for the PostgreSQL data and the Outputs file (default .local in the repository)",
    )
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.port <= 65535:
        parser.error(f"--port {arguments.port} is invalid: use 0 to 65535")
    if arguments.workers < 1:
        parser.error(f"--workers {arguments.workers} is invalid: use 1 or more")
    return arguments


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _replay(stack: LocalStack) -> bool:
    """Replay events/ and print the table; return whether every response matched."""
    if not (EVENTS_DIR / MANIFEST_NAME).exists():
        report(f"replay: skipped, {display_path(EVENTS_DIR / MANIFEST_NAME)} does not exist yet")
        return True
    assert stack.gateway is not None
    report(f"replay: sending the events listed in {display_path(EVENTS_DIR / MANIFEST_NAME)}")
    started = time.monotonic()
    try:
        rows = replay_events(EVENTS_DIR, stack.gateway.base_url, stack.signing_secret, SIGNATURE_TOLERANCE_SECONDS)
    except EventFileError as exc:
        report(f"replay: failed: {exc}")
        return False
    for line in format_table(rows):
        report(f"  {line}")
    mismatches = sum(not row.matches for row in rows)
    elapsed = time.monotonic() - started
    if mismatches:
        report(f"replay: {mismatches} of {len(rows)} responses differ from the manifest ({elapsed:.1f} s)")
    else:
        report(f"replay: all {len(rows)} responses as expected ({elapsed:.1f} s)")
    internal_errors = stack.gateway.internal_errors
    if internal_errors:
        report(f"replay: the gateway responded 500 to {len(internal_errors)} requests; the log above shows the errors")
        return False
    return mismatches == 0


def main(argv: list[str] | None = None) -> int:
    """Run the stack; return the process exit status."""
    arguments = _parse_arguments(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ComponentFormatter("%(component)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # Their start and stop lines repeat the stack's own step lines.
    for name in ("local_stack.postgres", "local_stack.aws"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and
    # SIGTERM would otherwise end the process without stopping PostgreSQL.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    stack = LocalStack(
        work_dir=arguments.work_dir,
        port=arguments.port,
        workers=arguments.workers,
        build_dir=None if arguments.no_build_check else PROJECT_ROOT / ".aws-sam" / "build",
        reporter=report,
    )
    status = 0
    try:
        stack.start()
        replay_ok = _replay(stack)
        if arguments.no_serve:
            status = 0 if replay_ok else 1
        else:
            report(
                f"serving: POST {stack.webhook_url}, signing secret {stack.signing_secret}, "
                f"Outputs in {display_path(stack.outputs_file)}, function logs in "
                f"{display_path(stack.function_log_file)}; Ctrl-C stops"
            )
            while True:
                time.sleep(3600)
    except LocalStackError:
        # The stack reported which step failed and what to do.
        status = 1
    except KeyboardInterrupt:
        report("stop requested")
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave PostgreSQL running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
