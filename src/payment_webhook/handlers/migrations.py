"""CloudFormation custom resource ``Custom::DatabaseMigrations``: apply the schema on deploy.

- Create and Update apply every migration not applied yet.
- Delete succeeds without touching the database, so deleting the stack or replacing the
  resource never drops data (the database has its own snapshot-on-delete policy).

The handler ALWAYS sends a response to ``ResponseURL``, also when it fails and when the
migrations are still running as the Lambda timeout nears. Otherwise CloudFormation
would wait an hour for the resource. A failure's Reason names what failed and contains
no secret.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from payment_webhook.config import load_database_settings, load_secrets_manager_settings
from payment_webhook.dal.cloudformation import RESPONSE_ATTEMPTS, RESPONSE_TIMEOUT_SECONDS, send_response
from payment_webhook.dal.connection import open_connection
from payment_webhook.dal.migrations import apply_migrations
from payment_webhook.dal.secrets import DatabaseCredentialsCache
from payment_webhook.dal.secrets_client import SecretsManagerClient
from payment_webhook.deadline import Deadline
from payment_webhook.observability import logger

# CloudFormation passes this id back on Update and Delete. Keeping it constant means an
# Update never looks like a replacement, which would trigger a Delete of the old id.
PHYSICAL_RESOURCE_ID = "payment-webhook-schema-migrations"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
# CloudFormation rejects responses over 4096 bytes; the Reason is the part that can grow.
MAX_REASON_CHARS = 1000
# Time kept for sending the response (every attempt) before the Lambda timeout.
RESPONSE_RESERVE_SECONDS = RESPONSE_TIMEOUT_SECONDS * RESPONSE_ATTEMPTS + 1.0
# Without a Lambda context, the work may take this long.
DEFAULT_WORK_SECONDS = 60.0


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Handle a Create, Update or Delete request and PUT the result to ``ResponseURL``.

    Parameters
    ----------
    event:
        CloudFormation custom resource request.
    context:
        Lambda context; ``get_remaining_time_in_millis()`` bounds the work.

    Returns
    -------
    dict[str, Any]
        The response that was sent (also when sending it failed).
    """
    event = event if isinstance(event, Mapping) else {}
    logger.clear_state()
    logger.set_correlation_id(event.get("RequestId") if isinstance(event.get("RequestId"), str) else None)
    request_type = event.get("RequestType")
    logger.info("custom resource request", extra={"request_type": request_type})

    data: dict[str, str] = {}
    try:
        if request_type == "Delete":
            status, reason = SUCCESS, "Delete leaves the schema and its data in place"
        elif request_type in ("Create", "Update"):
            applied = _apply_within_time_limit(_work_seconds(context))
            status = SUCCESS
            reason = f"applied {len(applied)} migration(s)"
            data["AppliedVersions"] = ",".join(applied)
        else:
            status, reason = FAILED, f"RequestType {request_type!r} is not Create, Update or Delete"
    except Exception as exc:
        logger.exception("custom resource request failed", extra={"request_type": request_type})
        status, reason = FAILED, f"{type(exc).__name__}: {exc}"

    response = {
        "Status": status,
        "Reason": reason[:MAX_REASON_CHARS],
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_RESOURCE_ID,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": data,
    }
    response_url = event.get("ResponseURL")
    if isinstance(response_url, str) and response_url:
        send_response(response_url, response, RESPONSE_TIMEOUT_SECONDS)
    else:
        logger.error("custom resource request has no ResponseURL, so no response was sent")
    return response


def _work_seconds(context: Any) -> float:
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(get_remaining):
        return DEFAULT_WORK_SECONDS
    return float(get_remaining()) / 1000.0 - RESPONSE_RESERVE_SECONDS


def _apply_within_time_limit(seconds: float) -> list[str]:
    """Run the migrations in a worker thread and stop waiting after ``seconds``.

    Raises
    ------
    TimeoutError
        The migrations were still running. The thread is left behind. When the execution
        environment is frozen or ends, its connection drops and the open transaction rolls
        back, so no migration is half applied.
    Exception
        Whatever the migrations raised.
    """
    if seconds <= 0:
        raise TimeoutError("no time left before the Lambda timeout to apply migrations: raise the function timeout")
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["applied"] = _apply(Deadline.after(seconds))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="apply-migrations", daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    if worker.is_alive():
        raise TimeoutError(
            f"migrations did not finish within {seconds:.0f} s, before the Lambda timeout: "
            "check for locks held on the database, or raise the migration function's timeout"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["applied"]


def _apply(deadline: Deadline) -> list[str]:
    settings = load_database_settings()
    client = SecretsManagerClient(load_secrets_manager_settings())
    connection = open_connection(
        settings,
        DatabaseCredentialsCache(client, settings.secret_arn),
        deadline,
        application_name="payment-webhook-migrations",
    )
    try:
        return apply_migrations(connection)
    finally:
        connection.close()
