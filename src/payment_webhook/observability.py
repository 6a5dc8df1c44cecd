"""Powertools Logger and Metrics shared by both functions.

The package's own modules log through ``logging.getLogger(__name__)``. Their records go
through the Powertools handler attached to the ``payment_webhook`` logger below, so they
are JSON lines with the same correlation id and event id as the handler's lines.

Log lines carry ids, types, sizes and reasons only: never a secret, a signature, the
payload or a customer or card field.
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_SERVICE_NAME = "payment-webhook"
DEFAULT_METRICS_NAMESPACE = "PaymentWebhook"

# Powertools reads POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE itself; the
# defaults keep the names right when a test or a script leaves them unset.
SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
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


def count(name: str) -> None:
    """Add 1 to the count metric ``name`` in the current invocation's metric set."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _route_package_logs_through_powertools() -> None:
    package_logger = logging.getLogger("payment_webhook")
    handler = logger.registered_handler
    if handler not in package_logger.handlers:
        package_logger.addHandler(handler)
    package_logger.setLevel(logger.log_level)
    # The Lambda runtime's root handler would print each record a second time as text.
    package_logger.propagate = False


_route_package_logs_through_powertools()
