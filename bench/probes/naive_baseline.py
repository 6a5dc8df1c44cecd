"""The naive cold-start baseline: a webhook handler written the usual way, timed in a fresh interpreter.

Usage: ``python -I naive_baseline.py OUTPUT EVENT_FILE``. It imports Powertools' Logger,
Metrics, Tracer and HTTP API resolver, boto3 and pg8000 at module level and creates them
there, as most handlers do. The first event creates a boto3 Secrets Manager client,
fetches both secrets from the loopback endpoint in ``AWS_ENDPOINT_URL_SECRETS_MANAGER``, checks the
signature, connects to PostgreSQL and runs one
``INSERT INTO bench_floor (id) VALUES (:id) ON CONFLICT DO NOTHING``.
It reads the same environment variables as the function.
"""

from __future__ import annotations

import json
import sys
import time

# json is already imported by the Lambda runtime before any handler module.
MODULE_START = time.perf_counter()

import hashlib  # noqa: E402
import hmac  # noqa: E402
import os  # noqa: E402

import boto3  # noqa: E402
import pg8000.native  # noqa: E402
from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: E402
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response  # noqa: E402

logger = Logger(service="naive-baseline")
metrics = Metrics(namespace="NaiveBaseline", service="naive-baseline")
tracer = Tracer(service="naive-baseline")
app = APIGatewayHttpResolver()

MODULE_END = time.perf_counter()

_clients: dict[str, object] = {}


def _local_endpoint() -> str:
    """Return the local Secrets Manager URL; refuse to run without one, so no call can reach AWS.

    The URL is also passed to boto3 explicitly, so a missing or mistyped variable stops
    the probe instead of letting boto3 fall back to the real regional endpoint.
    """
    url = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER", "")
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise SystemExit(f"AWS_ENDPOINT_URL_SECRETS_MANAGER {url!r} is not a loopback URL: the baseline only runs locally")
    return url


def _secret(client: object, arn: str) -> str:
    return str(client.get_secret_value(SecretId=arn)["SecretString"])  # type: ignore[attr-defined]


@app.post("/webhooks/payments")
def receive() -> Response:
    request = app.current_event
    if "connection" not in _clients:
        client = boto3.client("secretsmanager", endpoint_url=_local_endpoint())
        signing_secret = _secret(client, os.environ["SIGNING_SECRET_ARN"])
        database_secret = json.loads(_secret(client, os.environ["DB_SECRET_ARN"]))
        _clients["signing_secret"] = signing_secret
        _clients["connection"] = pg8000.native.Connection(
            user=database_secret["username"],
            password=database_secret["password"],
            host=os.environ["DB_HOST"],
            port=int(os.environ["DB_PORT"]),
            database=os.environ["DB_NAME"],
        )
    header = request.headers.get("stripe-signature", "")
    fields = dict(part.split("=", 1) for part in header.split(","))
    body = request.body or ""
    expected = hmac.new(
        str(_clients["signing_secret"]).encode(), f"{fields['t']}.{body}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, fields.get("v1", "")):
        return Response(status_code=400, content_type="application/json", body='{"error": "invalid_signature"}')
    event_id = json.loads(body)["id"]
    _clients["connection"].run(  # type: ignore[attr-defined]
        "INSERT INTO bench_floor (id) VALUES (:id) ON CONFLICT DO NOTHING", id=event_id
    )
    return Response(status_code=200, content_type="application/json", body=json.dumps({"status": "stored"}))


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)


class LambdaContext:
    """The context attributes that Powertools reads."""

    function_name = "naive-baseline"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:naive-baseline"
    log_group_name = "/aws/lambda/naive-baseline"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    output, event_file = sys.argv[1:3]
    with open(event_file) as file:
        event = json.load(file)
    start = time.perf_counter()
    response = lambda_handler(event, LambdaContext())
    handled = time.perf_counter()
    import_ms = (MODULE_END - MODULE_START) * 1000.0
    first_event_ms = (handled - start) * 1000.0
    with open(output, "w") as file:
        json.dump(
            {
                "import_ms": import_ms,
                "first_event_ms": first_event_ms,
                "cold_start_ms": import_ms + first_event_ms,
                "status_code": response.get("statusCode"),
                "body": response.get("body"),
                "modules_loaded": len(sys.modules),
            },
            file,
        )


if __name__ == "__main__":
    main()
