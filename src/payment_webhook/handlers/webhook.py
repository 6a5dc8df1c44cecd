"""Lambda handler of the webhook: API Gateway HTTP API (payload 2.0) event in, HTTP response out.

The handler only adapts the event, calls ``logic.delivery.deliver`` and turns its result
into the response of the webhook contract. It never responds with 500 and never puts a stack
trace in a response:

- a rejection gets the 4xx status of its error code.
- an unreachable database or Secrets Manager gets 503 ``storage_unavailable``.
- any other exception (a configuration error or a bug) is logged with its type, its
  SQLSTATE when it has one, and its stack frames, and gets 503 ``internal_error``. The
  status marks the failure as temporary and on this side, so the provider keeps retrying
  the delivery until the fault is fixed, and the error code distinguishes it from an outage.

The message of an unexpected exception is never logged, because it can quote the payload:
a pg8000 error carries PostgreSQL's error context, which shows the text around the value
it rejected. A ``ConfigurationError`` is the exception, since its message names the variable.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from payment_webhook.dal.connection import sqlstate_of
from payment_webhook.deadline import Deadline
from payment_webhook.dependencies import get_webhook_dependencies
from payment_webhook.errors import ConfigurationError, StorageUnavailable, WebhookRejection
from payment_webhook.logic.delivery import deliver
from payment_webhook.models.event import SkippedPaymentUpdate, WebhookEvent
from payment_webhook.models.outcome import DeliveryResult, StoreOutcome
from payment_webhook.models.request import WebhookRequest
from payment_webhook.observability import MetricName, count, logger, metrics

STORAGE_UNAVAILABLE = "storage_unavailable"
INTERNAL_ERROR = "internal_error"


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Verify, validate and store one webhook delivery.

    Parameters
    ----------
    event:
        API Gateway HTTP API payload 2.0 event.
    context:
        Lambda context; its remaining time bounds the network calls.

    Returns
    -------
    dict[str, Any]
        ``{"statusCode", "headers", "body"}`` with a JSON body.
    """
    try:
        request = adapt_http_api_event(event)
        _start_invocation_logging(request, context)
        response = _process(request, context)
    except Exception as exc:
        # Only reached when adapting the event or logging itself failed.
        log_unexpected_error("unexpected error before processing the delivery", exc)
        count(MetricName.UNEXPECTED_ERROR)
        response = build_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": INTERNAL_ERROR})
    _flush_metrics()
    return response


def adapt_http_api_event(event: Any) -> WebhookRequest:
    """Return the parts of an HTTP API 2.0 event that the webhook reads.

    Header names are lower-cased; two names that differ only in case are joined with a
    comma, as API Gateway joins repeated headers. A missing or non-text body is empty.
    """
    if not isinstance(event, Mapping):
        event = {}
    headers: dict[str, str] = {}
    raw_headers = event.get("headers")
    if isinstance(raw_headers, Mapping):
        for name, value in raw_headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                continue
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    body = event.get("body")
    request_context = event.get("requestContext")
    request_id = request_context.get("requestId") if isinstance(request_context, Mapping) else None
    return WebhookRequest(
        headers=headers,
        body=body if isinstance(body, str) else "",
        is_base64_encoded=event.get("isBase64Encoded") is True,
        request_id=request_id if isinstance(request_id, str) else None,
    )


def build_response(status: HTTPStatus, body: Mapping[str, Any]) -> dict[str, Any]:
    """Return an HTTP API response with a JSON body."""
    return {
        "statusCode": int(status),
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def _process(request: WebhookRequest, context: Any) -> dict[str, Any]:
    try:
        dependencies = get_webhook_dependencies()
        result = deliver(
            request,
            signing_secrets=dependencies.signing_secrets,
            store=dependencies.store,
            tolerance_seconds=dependencies.settings.signature_tolerance_seconds,
            deadline=Deadline.from_lambda_context(context),
            on_event_parsed=_tag_logs_with_event,
        )
    except WebhookRejection as rejection:
        return _reject(rejection, request)
    except StorageUnavailable as exc:
        logger.error(
            "storage unavailable, responding with 503 so that the provider retries",
            extra={"error_type": type(exc).__name__, "error": str(exc)},
        )
        count(MetricName.STORAGE_UNAVAILABLE)
        return build_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": STORAGE_UNAVAILABLE})
    except Exception as exc:
        log_unexpected_error("unexpected error, responding with 503 so that the provider retries", exc)
        count(MetricName.UNEXPECTED_ERROR)
        return build_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": INTERNAL_ERROR})
    return _accept(result, request)


def log_unexpected_error(message: str, exc: BaseException) -> None:
    """Log ``exc`` at ERROR with its type, SQLSTATE and stack frames, but without its message.

    A ``ConfigurationError`` keeps its message, which names the variable and the fix.
    """
    extra: dict[str, Any] = {
        "error_type": type(exc).__name__,
        "stack_frames": "".join(traceback.format_tb(exc.__traceback__)),
    }
    sqlstate = sqlstate_of(exc)
    if sqlstate is not None:
        extra["sqlstate"] = sqlstate
    if isinstance(exc, ConfigurationError):
        extra["error"] = str(exc)
    logger.error(message, extra=extra)


def _accept(result: DeliveryResult, request: WebhookRequest) -> dict[str, Any]:
    outcome = result.store_result.outcome
    if outcome is StoreOutcome.STORED:
        count(MetricName.EVENT_STORED)
        logger.info(
            "event stored",
            extra={"payment_changed": result.store_result.payment_changed, "body_length": len(request.body)},
        )
        payment_update = result.event.payment_update
        if isinstance(payment_update, SkippedPaymentUpdate):
            # Logged when the event is stored, so a retry after a 503 does not log it twice.
            logger.warning(
                "payment update skipped", extra={"field": payment_update.field, "problem": payment_update.problem}
            )
            count(MetricName.PAYMENT_UPDATE_SKIPPED)
    else:
        count(MetricName.EVENT_DUPLICATE)
        logger.info("duplicate event, nothing changed", extra={"body_length": len(request.body)})
    return build_response(HTTPStatus.OK, {"status": outcome.value, "event_id": result.event.event_id})


def _reject(rejection: WebhookRejection, request: WebhookRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "reason": rejection.error_code,
        "status_code": int(rejection.http_status),
        "detail": rejection.message,
        "body_length": len(request.body),
    }
    if rejection.event_id is not None:
        extra["event_id"] = rejection.event_id
    logger.warning("webhook rejected", extra=extra)
    metrics.add_dimension(name="reason", value=rejection.error_code)
    count(MetricName.WEBHOOK_REJECTED)
    body = {"error": rejection.error_code}
    if rejection.message_in_response:
        body["message"] = rejection.message
    return build_response(rejection.http_status, body)


def _start_invocation_logging(request: WebhookRequest, context: Any) -> None:
    # Keys appended in an earlier invocation of this execution environment must not leak.
    logger.clear_state()
    logger.set_correlation_id(request.request_id)
    function_request_id = getattr(context, "aws_request_id", None)
    if isinstance(function_request_id, str):
        logger.append_keys(function_request_id=function_request_id)


def _tag_logs_with_event(event: WebhookEvent) -> None:
    logger.append_keys(event_id=event.event_id, event_type=event.event_type, livemode=event.livemode)


def _flush_metrics() -> None:
    try:
        metrics.flush_metrics()
    except Exception as exc:
        log_unexpected_error("publishing the invocation's metrics failed", exc)
