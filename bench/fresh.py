"""Run a probe script from bench/probes in a fresh interpreter and read back its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PROBES_DIR = Path(__file__).resolve().parent / "probes"
PROBE_TIMEOUT_SECONDS = 120


class ProbeError(RuntimeError):
    """A probe exited with an error or wrote no figures."""


def run_probe(
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    python_flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run ``bench/probes/<script>`` as ``python -I <flags> <script> OUTPUT <args>`` and return its JSON.

    ``-I`` keeps PYTHONPATH, the user's site folder and the current folder out of
    ``sys.path``, so only what the probe puts there is importable besides the venv.
    Standard output goes to /dev/null because the handler's log lines are not figures.

    Parameters
    ----------
    script:
        File name inside bench/probes.
    args:
        Arguments after the output path.
    env:
        Variables added to this process's environment for the child.
    python_flags:
        Extra interpreter flags, such as ``-X importtime``.

    Raises
    ------
    ProbeError
        The probe exited non-zero or wrote nothing; the message contains its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as scratch:
        output = Path(scratch) / "figures.json"
        command = [sys.executable, "-I", *python_flags, str(PROBES_DIR / script), str(output), *args]
        child_env = {**os.environ, **(env or {})}
        result = subprocess.run(
            command,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0 or not output.exists():
            raise ProbeError(
                f"probe {script} {' '.join(args)} failed with exit code {result.returncode}:\n{result.stderr[-3000:]}"
            )
        figures: dict[str, Any] = json.loads(output.read_text())
        return figures


IMPORTTIME_MARKER = "bench: import starts here"


def run_importtime(module: str, paths: tuple[str, ...] = ()) -> str:
    """Return the ``-X importtime`` report (stderr) of importing ``module`` in a fresh interpreter.

    The report's lines for the interpreter's own start-up come before a line holding
    ``IMPORTTIME_MARKER``. json is imported before the marker, as in the probes.

    Raises
    ------
    ProbeError
        The import failed.
    """
    code = "import sys, json\n" + "".join(f"sys.path.insert(0, {path!r})\n" for path in reversed(paths))
    code += f"sys.stderr.write({IMPORTTIME_MARKER!r} + '\\n')\nimport {module}\n"
    result = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise ProbeError(f"importing {module} with -X importtime failed:\n{result.stderr[-3000:]}")
    return result.stderr
