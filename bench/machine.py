"""Describe the machine a benchmark ran on: cores, CPU model, memory, Python and PostgreSQL."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return the first ``model name`` in /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Return the total memory in GiB from /proc/meminfo, or None where the file is missing."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                kibibytes = int(line.split()[1])
                return round(kibibytes / (1024 * 1024), 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cores() -> int:
    """Return the number of cores this process may run on (what ``nproc`` prints)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe(postgres_version: str, postgres_settings: dict[str, str]) -> dict[str, Any]:
    """Return the machine description written beside the figures.

    Parameters
    ----------
    postgres_version:
        ``SHOW server_version`` of the server the benchmarks ran against.
    postgres_settings:
        Server settings that change commit latency (``fsync``, ``synchronous_commit``).
    """
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": usable_cores(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "postgres_version": postgres_version,
        "postgres_settings": postgres_settings,
        "load_average_at_start": load_average(),
    }


def load_average() -> float:
    """Return the 1-minute load average: other processes on the machine skew absolute figures."""
    return round(os.getloadavg()[0], 2)
