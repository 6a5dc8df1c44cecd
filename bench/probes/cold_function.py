"""Cold start of the function in a fresh interpreter: import the handler module, handle one event.

Usage: ``python -I cold_function.py OUTPUT EVENT_FILE FUNCTION_DIR``. FUNCTION_DIR (the
package ``sam build`` made) goes first on ``sys.path``, as /var/task does in Lambda. The
function reads its settings from the environment the caller passes. json is imported
before the clock starts, as the Lambda runtime has already imported it.
"""

from __future__ import annotations

import json
import sys
import time


class LambdaContext:
    """The context attributes that handlers and Powertools read."""

    function_name = "payment-webhook-dev-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:payment-webhook-dev-bench"
    log_group_name = "/aws/lambda/payment-webhook-dev-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    output, event_file, function_dir = sys.argv[1:4]
    sys.path.insert(0, function_dir)
    with open(event_file) as file:
        event = json.load(file)

    start = time.perf_counter()
    from payment_webhook.handlers import webhook

    imported = time.perf_counter()
    modules_after_import = set(sys.modules)
    response = webhook.lambda_handler(event, LambdaContext())
    handled = time.perf_counter()
    # Files of the package that the cold start loaded, to compare with what the package ships.
    package_files = sorted(
        {
            module.__file__
            for module in list(sys.modules.values())
            if getattr(module, "__file__", None) and module.__file__.startswith(function_dir)
        }
    )

    with open(output, "w") as file:
        json.dump(
            {
                "import_ms": (imported - start) * 1000.0,
                "first_event_ms": (handled - imported) * 1000.0,
                "cold_start_ms": (handled - start) * 1000.0,
                "status_code": response.get("statusCode"),
                "body": response.get("body"),
                "modules_loaded": len(sys.modules),
                "modules_loaded_by_first_event": sorted(set(sys.modules) - modules_after_import),
                "package_files_loaded": package_files,
            },
            file,
        )


if __name__ == "__main__":
    main()
