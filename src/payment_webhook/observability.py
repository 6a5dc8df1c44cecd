"""Powertools Logger and Metrics shared by both functions.

The package's own modules log through ``logging.getLogger(__name__)``. Their records go
through the Powertools handler attached to the ``payment_webhook`` logger below, so they
are JSON lines with the same correlation id and event id as the handler's lines.

Log lines carry ids, types, sizes and reasons only: never a secret, a signature, the
payload or a customer or card field.
"""

from __future__ import annotations

import json
import logging
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_SERVICE_NAME = "payment-webhook"
DEFAULT_METRICS_NAMESPACE = "PaymentWebhook"

# Powertools reads POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE itself; the
# defaults keep the names right when a test or a script leaves them unset.
SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE_NAME

# The characters a JSON text can start with: whitespace, or the first character of a value
# as Python's json module reads it (NaN and Infinity included).
_JSON_TEXT_FIRST_CHARACTERS = frozenset(' \t\n\r{["-0123456789tfnNI')


def _decode_json_message(message: str) -> object:
    """Decode ``message`` as JSON when it can be JSON, else return it unchanged.

    Powertools logs a message that is valid JSON as the decoded value and any other text as
    it is. With its default, ``json.loads``, every plain sentence costs a raised and caught
    error. The first character rules those sentences out without one.
    """
    if message[:1] in _JSON_TEXT_FIRST_CHARACTERS:
        return json.loads(message)
    return message


logger = Logger(service=SERVICE_NAME, json_deserializer=_decode_json_message)
metrics = Metrics(
    service=SERVICE_NAME,
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
)


class MetricName:
    """Names of the metrics this service emits, one count per invocation outcome."""

    EVENT_STORED = "EventStored"
    EVENT_DUPLICATE = "EventDuplicate"
    # Emitted with a "reason" dimension that contains the rejection's error code.
    WEBHOOK_REJECTED = "WebhookRejected"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    UNEXPECTED_ERROR = "UnexpectedError"
    # A stored payment_intent.* or charge.refunded event whose payment fields could not be used.
    PAYMENT_UPDATE_SKIPPED = "PaymentUpdateSkipped"


def count(name: str) -> None:
    """Add 1 to the count metric ``name`` in the current invocation's metric set."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _reuse_one_json_encoder() -> None:
    # Powertools' default serializer passes its settings to json.dumps, which builds a new
    # JSONEncoder for every line. One encoder with the same settings writes the same text.
    formatter = logger.registered_formatter
    if isinstance(formatter, LambdaPowertoolsFormatter):
        formatter.json_serializer = json.JSONEncoder(
            default=formatter.json_default,
            separators=(",", ":"),
            indent=formatter.json_indent,
            ensure_ascii=False,
        ).encode


def _route_package_logs_through_powertools() -> None:
    package_logger = logging.getLogger("payment_webhook")
    handler = logger.registered_handler
    if handler not in package_logger.handlers:
        package_logger.addHandler(handler)
    package_logger.setLevel(logger.log_level)
    # The Lambda runtime's root handler would print each record a second time as text.
    package_logger.propagate = False


_reuse_one_json_encoder()
_route_package_logs_through_powertools()
