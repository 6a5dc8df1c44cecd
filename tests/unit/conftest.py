"""Unit-level fixtures and builders for the payment webhook function.

The servers come from ``tests/conftest.py`` (PostgreSQL and moto's Secrets Manager on
127.0.0.1). Builders of events and signatures live in ``webhook_test_helpers.py``. On top
of the servers this file provides:

- ``webhook_env``: ``function_env`` with the migrations applied and the function's cached
  objects reset before and after the test, plus an owner connection for assertions.
- ``send_webhook``: signs a payload with Stripe's own signer and calls the handler.
- ``captured_logs``: captures the JSON log lines the function writes.
- ``lambda_context``: a stand-in for the Lambda context object.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from webhook_test_helpers import (
    FakeLambdaContext,
    SendWebhook,
    WebhookEnvironment,
    http_api_event,
    open_owner_connection,
    sign,
    to_body,
)

from payment_webhook.dal.migrations import apply_migrations  # noqa: E402
from payment_webhook.dependencies import replace_webhook_dependencies  # noqa: E402
from payment_webhook.handlers.webhook import lambda_handler  # noqa: E402
from payment_webhook.observability import logger as function_logger  # noqa: E402


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """Return a Lambda context with 10 s left."""
    return FakeLambdaContext()


@pytest.fixture
def webhook_env(function_env: Any) -> Iterator[WebhookEnvironment]:
    """Apply the migrations to a fresh database and start the function from a clean state."""
    connection = open_owner_connection(function_env.database)
    apply_migrations(connection)
    replace_webhook_dependencies(None)
    try:
        yield WebhookEnvironment(env=function_env, connection=connection)
    finally:
        replace_webhook_dependencies(None)
        # A test may have terminated this session already.
        with contextlib.suppress(Exception):
            connection.close()


@pytest.fixture
def send_webhook(webhook_env: WebhookEnvironment) -> SendWebhook:
    """Return a function that signs a payload and passes it to the handler.

    Keyword arguments: ``secret`` (default: the configured one), ``timestamp`` (default:
    now), ``header_name``, ``base64`` (send the body base64-encoded) and ``headers``
    (replace the signature header entirely).
    """

    def send(
        payload: dict[str, Any] | str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        header_name: str = "Stripe-Signature",
        base64_body: bool = False,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = to_body(payload)
        if headers is None:
            headers = {header_name: sign(body, secret or webhook_env.signing_secret, timestamp)}
        sent_body = base64.b64encode(body.encode("utf-8")).decode("ascii") if base64_body else body
        event = http_api_event(sent_body, headers=headers, is_base64_encoded=base64_body)
        return lambda_handler(event, webhook_env.context)

    return send


class CapturedLogs:
    """The function's log output since the fixture started."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def text(self) -> str:
        return self.buffer.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """Return every line parsed as JSON (each line the Powertools logger writes is JSON)."""
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def messages(self, message: str) -> list[dict[str, Any]]:
        """Return the records whose message is ``message``."""
        return [record for record in self.records() if record.get("message") == message]


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Send the function's log lines to a buffer for the duration of the test."""
    handler = function_logger.registered_handler
    captured = CapturedLogs()
    previous = handler.setStream(captured.buffer)
    try:
        yield captured
    finally:
        handler.setStream(previous)
