"""Figures of the fault-injection and fuzz tests, written to ``.local/reliability-figures.json``.

Each scenario records what it tried and what it found (deliveries, faults, rows lost or
doubled) when its assertions have run. The file keeps the latest figures of every scenario
with the command, date and machine of that run; ``python -m tests.reliability.report``
renders it into ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.machine import cpu_model, memory_gib, usable_cores

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = REPOSITORY_ROOT / ".local" / "reliability-figures.json"


def pytest_command(config: pytest.Config) -> str:
    """Return the pytest command line of this session, as a developer would type it."""
    arguments = " ".join(str(argument) for argument in config.invocation_params.args)
    return f"python -m pytest {arguments}".strip()


def git_revision() -> str:
    """Return the checked-out commit, with ``+changes`` when the working tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPOSITORY_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+changes" if status else commit


def machine_description() -> dict[str, Any]:
    """Return the cores, CPU, memory, kernel and Python of this machine."""
    return {
        "nproc": usable_cores(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def record_figures(config: pytest.Config, scenario: str, figures: dict[str, Any], *, passed: bool) -> None:
    """Store one scenario's figures in the figures file, replacing that scenario's previous entry.

    Parameters
    ----------
    config:
        The pytest configuration, for the command line.
    scenario:
        Key of the scenario, such as ``database_outage``.
    figures:
        JSON-serialisable values measured by the scenario's test.
    passed:
        Whether the scenario's test passed.
    """
    entry = {
        **figures,
        "result": "passed" if passed else "failed",
        "command": pytest_command(config),
        "recorded_at_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": git_revision(),
        "machine": machine_description(),
    }
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Several pytest sessions may run on this machine at once; the lock keeps one
    # session's read-modify-write from dropping another's scenario.
    with (FIGURES_FILE.parent / "reliability-figures.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = read_figures()
        document[scenario] = entry
        partial = FIGURES_FILE.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        partial.replace(FIGURES_FILE)


def read_figures(path: Path = FIGURES_FILE) -> dict[str, Any]:
    """Return the recorded figures by scenario, or an empty dict when none were recorded."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return document if isinstance(document, dict) else {}
