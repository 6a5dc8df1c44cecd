"""The first secret fetch in a fresh interpreter, with boto3 or with the function's own client.

Usage: ``python -I secret_fetch.py OUTPUT CLIENT SECRET_ARN FUNCTION_DIR`` where CLIENT is
``boto3`` or ``function``. The endpoint (``AWS_ENDPOINT_URL_SECRETS_MANAGER``, which must be
a loopback URL), region and credentials come from the environment.
Import, client creation and the first ``GetSecretValue`` are timed separately; a second
call shows the cost once everything is warm.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable


def _local_endpoint() -> str:
    """Return the local Secrets Manager URL; refuse to run without one, so no call can reach AWS.

    The URL is also passed to boto3 explicitly, so a missing or mistyped variable stops
    the probe instead of letting boto3 fall back to the real regional endpoint.
    """
    url = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER", "")
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise SystemExit(f"AWS_ENDPOINT_URL_SECRETS_MANAGER {url!r} is not a loopback URL: the probe only runs locally")
    return url


def _boto3_reader() -> Callable[[str], str]:
    import boto3

    imported = time.perf_counter()
    client = boto3.client("secretsmanager", endpoint_url=_local_endpoint())
    _marks["imported"] = imported

    def read(secret_arn: str) -> str:
        return str(client.get_secret_value(SecretId=secret_arn)["SecretString"])

    return read


def _function_reader() -> Callable[[str], str]:
    _local_endpoint()
    from payment_webhook.config import load_secrets_manager_settings
    from payment_webhook.dal.secrets_client import SecretsManagerClient
    from payment_webhook.deadline import Deadline

    imported = time.perf_counter()
    client = SecretsManagerClient(load_secrets_manager_settings())
    _marks["imported"] = imported

    def read(secret_arn: str) -> str:
        return client.get_secret_string(secret_arn, Deadline.after(10.0))

    return read


_marks: dict[str, float] = {}
_READERS = {"boto3": _boto3_reader, "function": _function_reader}


def main() -> None:
    output, client_name, secret_arn, function_dir = sys.argv[1:5]
    sys.path.insert(0, function_dir)

    start = time.perf_counter()
    read = _READERS[client_name]()
    created = time.perf_counter()
    value = read(secret_arn)
    first_call = time.perf_counter()
    read(secret_arn)
    second_call = time.perf_counter()

    with open(output, "w") as file:
        json.dump(
            {
                "import_ms": (_marks["imported"] - start) * 1000.0,
                "client_ms": (created - _marks["imported"]) * 1000.0,
                "first_call_ms": (first_call - created) * 1000.0,
                "total_ms": (first_call - start) * 1000.0,
                "warm_call_ms": (second_call - first_call) * 1000.0,
                "value_length": len(value),
            },
            file,
        )


if __name__ == "__main__":
    main()
