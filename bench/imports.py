"""Import times in fresh interpreters, and what dominates the handler's import (``-X importtime``)."""

from __future__ import annotations

import logging
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.fresh import IMPORTTIME_MARKER, run_importtime, run_probe
from bench.stats import median

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

HANDLER_MODULE = "payment_webhook.handlers.webhook"


@dataclass(frozen=True)
class ImportCase:
    """One module whose import is timed: ``name`` is its key in results.json."""

    name: str
    module: str
    description: str


IMPORT_CASES = (
    ImportCase("handler", HANDLER_MODULE, "the webhook handler module, everything it imports"),
    ImportCase("observability", "payment_webhook.observability", "the function's Powertools Logger and Metrics"),
    ImportCase("secrets_client", "payment_webhook.dal.secrets_client", "the function's stdlib SigV4 Secrets Manager client"),
    ImportCase("boto3", "boto3", "boto3 (what the secrets client replaces)"),
    ImportCase("pg8000", "pg8000.native", "pg8000 (pure Python driver, chosen)"),
    ImportCase("psycopg", "psycopg", "psycopg 3 with the binary (libpq) package"),
    ImportCase(
        "powertools_event_handler",
        "aws_lambda_powertools.event_handler",
        "Powertools' event handler (APIGatewayHttpResolver)",
    ),
    ImportCase("aws_xray_sdk", "aws_xray_sdk.core", "aws-xray-sdk (what Powertools' Tracer loads)"),
)

# One line of ``-X importtime``: "import time:  self [us] | cumulative | package".
_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def time_imports(function_dir: Path, runs: int) -> dict[str, Any]:
    """Time each import case in ``runs`` fresh interpreters (after one untimed run that writes bytecode).

    Parameters
    ----------
    function_dir:
        The function package, first on ``sys.path`` in every interpreter, so the
        function's own dependencies load from it.
    runs:
        Fresh interpreters per case; the median is reported.

    Returns
    -------
    dict
        Per case name: ``median_ms``, ``min_ms``, ``runs`` and ``module``.
    """
    results: dict[str, Any] = {}
    for case in IMPORT_CASES:
        run_probe("import_probe.py", case.module, str(function_dir))
        samples = [
            float(run_probe("import_probe.py", case.module, str(function_dir))["import_ms"]) for _ in range(runs)
        ]
        results[case.name] = {
            "module": case.module,
            "description": case.description,
            "median_ms": round(median(samples), 1),
            "min_ms": round(min(samples), 1),
            "runs": runs,
        }
        logger.info("import %s: median %.1f ms over %d runs", case.module, median(samples), runs)
    return results


def importtime_breakdown(function_dir: Path, module: str = HANDLER_MODULE, top: int = 8) -> dict[str, Any]:
    """Attribute the ``-X importtime`` report of importing ``module`` to the packages it imports.

    See :func:`summarize_importtime` for how time is attributed.
    """
    report = run_importtime(module, (str(function_dir),))
    return summarize_importtime(report, module, top)


@dataclass
class _ImportNode:
    name: str
    depth: int
    self_us: int
    cumulative_us: int
    children: list[_ImportNode] = field(default_factory=list)


def summarize_importtime(report: str, module: str, top: int) -> dict[str, Any]:
    """Summarize an ``-X importtime`` report by the dependency each import came through.

    Every import made while loading ``module``'s own package is charged to the first
    module outside that package on its import chain, with everything beneath it. So
    ``scramp`` and ``importlib.metadata`` count under ``pg8000`` when pg8000 imported
    them first; a module imported by two packages counts once, under the first.

    Returns
    -------
    dict
        ``total_ms`` (all imports after the interpreter's start-up), ``own_ms`` (self
        time of ``module``'s own package), and ``groups``: the ``top`` dependencies by
        time, each with ``package``, ``ms``, ``modules`` and ``stdlib``.
    """
    own_package = module.split(".", 1)[0]
    roots = _import_tree(report)
    by_dependency: dict[str, int] = defaultdict(int)
    modules_by_dependency: dict[str, int] = defaultdict(int)
    own_us = 0

    def visit(node: _ImportNode) -> None:
        nonlocal own_us
        package = node.name.split(".", 1)[0]
        if package == own_package:
            own_us += node.self_us
            for child in node.children:
                visit(child)
            return
        by_dependency[package] += node.cumulative_us
        modules_by_dependency[package] += _count(node)

    for root in roots:
        visit(root)
    total_us = sum(root.cumulative_us for root in roots)
    ranked = sorted(by_dependency.items(), key=lambda item: item[1], reverse=True)[:top]
    return {
        "module": module,
        "total_ms": round(total_us / 1000.0, 1),
        "own_ms": round(own_us / 1000.0, 1),
        "groups": [
            {
                "package": package,
                "ms": round(elapsed_us / 1000.0, 1),
                "modules": modules_by_dependency[package],
                "stdlib": package in sys.stdlib_module_names,
            }
            for package, elapsed_us in ranked
        ],
    }


def _import_tree(report: str) -> list[_ImportNode]:
    """Rebuild the import tree from ``-X importtime`` lines, which list children before their parent."""
    lines = report.splitlines()
    if IMPORTTIME_MARKER in lines:
        lines = lines[lines.index(IMPORTTIME_MARKER) + 1 :]
    pending: list[_ImportNode] = []
    for line in lines:
        match = _IMPORTTIME_LINE.match(line)
        if match is None:
            continue
        # One space of indent is a top-level import; each level of nesting adds two.
        depth = (len(match[3]) - 1) // 2
        node = _ImportNode(match[4], depth, int(match[1]), int(match[2]))
        while pending and pending[-1].depth > depth:
            node.children.insert(0, pending.pop())
        pending.append(node)
    return pending


def _count(node: _ImportNode) -> int:
    return 1 + sum(_count(child) for child in node.children)
