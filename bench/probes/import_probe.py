"""Time one import in a fresh interpreter.

Usage: ``python -I import_probe.py OUTPUT MODULE [PATH ...]``; each PATH is put in front of
``sys.path`` first. json is imported before the clock starts, as the Lambda runtime has
already imported it before it imports a handler.
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def main() -> None:
    output, module = sys.argv[1], sys.argv[2]
    for path in reversed(sys.argv[3:]):
        sys.path.insert(0, path)
    loaded_before = len(sys.modules)
    start = time.perf_counter()
    importlib.import_module(module)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    with open(output, "w") as file:
        json.dump({"import_ms": elapsed_ms, "modules_loaded": len(sys.modules) - loaded_before}, file)


if __name__ == "__main__":
    main()
