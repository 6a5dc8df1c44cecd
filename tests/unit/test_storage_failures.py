"""Outages and rotations: database and Secrets Manager down, credentials rotated, connections dropped."""

from __future__ import annotations

import json
import secrets
import socket
from collections import Counter
from typing import Any

import pytest
from webhook_test_helpers import (
    SendWebhook,
    WebhookEnvironment,
    open_owner_connection,
    response_json,
    stripe_event,
)

from payment_webhook.config import load_webhook_settings
from payment_webhook.dal.events import EventStore
from payment_webhook.dal.secrets_client import SecretsManagerClient
from payment_webhook.dependencies import build_webhook_dependencies, replace_webhook_dependencies
from payment_webhook.errors import SecretStoreUnreachable


def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count GetSecretValue calls per secret ARN."""
    reads: Counter[str] = Counter()
    original = SecretsManagerClient.get_secret_string

    def counting(self: SecretsManagerClient, secret_id: str, deadline: Any) -> str:
        reads[secret_id] += 1
        return original(self, secret_id, deadline)

    monkeypatch.setattr(SecretsManagerClient, "get_secret_string", counting)
    return reads


def assert_storage_unavailable(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 503
    assert response_json(response) == {"error": "storage_unavailable"}


def test_database_secret_rotation_reread_once(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    postgres_server: Any,
    secret_reads: Counter[str],
) -> None:
    """After RDS rotates the password, the next delivery re-reads the secret once and is stored."""
    env = webhook_env.env
    assert send_webhook(stripe_event())["statusCode"] == 200

    new_password = secrets.token_urlsafe(24)
    postgres_server.set_password(env.database.username, new_password)
    env.secrets_manager.put_secret_value(
        env.db_secret_arn, {"username": env.database.username, "password": new_password}
    )
    postgres_server.terminate_connections(env.database.name)

    response = send_webhook(stripe_event())
    assert response_json(response)["status"] == "stored"
    assert secret_reads[env.db_secret_arn] == 2


def test_database_secret_wrong_after_reread_is_503(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    postgres_server: Any,
    secret_reads: Counter[str],
) -> None:
    """When the re-read secret is still rejected, the response is 503 after exactly one re-read."""
    env = webhook_env.env
    postgres_server.set_password(env.database.username, secrets.token_urlsafe(24))
    assert_storage_unavailable(send_webhook(stripe_event()))
    assert secret_reads[env.db_secret_arn] == 2


def test_dropped_connection_reconnects(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, postgres_server: Any
) -> None:
    """A connection the server closed between invocations is replaced and the event stored."""
    assert send_webhook(stripe_event())["statusCode"] == 200
    assert postgres_server.terminate_connections(webhook_env.env.database.name) >= 1
    assert response_json(send_webhook(stripe_event()))["status"] == "stored"


def test_database_down_then_back(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, postgres_server: Any
) -> None:
    """With the server stopped the response is 503 and nothing is stored. Once it is back the retry is stored."""
    if not postgres_server.can_restart:
        pytest.skip("the server named by DATABASE_URL is not ours to stop")
    assert send_webhook(stripe_event())["statusCode"] == 200
    event = stripe_event()

    postgres_server.stop()
    try:
        assert_storage_unavailable(send_webhook(event))
    finally:
        postgres_server.start()

    webhook_env.connection = open_owner_connection(webhook_env.env.database)
    assert webhook_env.query("SELECT count(*) FROM webhook_events WHERE event_id = :id", id=event["id"]) == [[0]]
    assert response_json(send_webhook(event)) == {"status": "stored", "event_id": event["id"]}


def test_database_port_closed(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening on DB_PORT gives 503 storage_unavailable."""
    monkeypatch.setenv("DB_PORT", str(closed_port()))
    replace_webhook_dependencies(None)
    assert_storage_unavailable(send_webhook(stripe_event()))


def test_secrets_manager_unreachable(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable Secrets Manager gives 503 storage_unavailable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{closed_port()}")
    replace_webhook_dependencies(None)
    assert_storage_unavailable(send_webhook(stripe_event()))


def test_signing_secret_not_found(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signing secret ARN that does not exist gives 503, so deliveries are retried once it is fixed."""
    monkeypatch.setenv("SIGNING_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    replace_webhook_dependencies(None)
    assert_storage_unavailable(send_webhook(stripe_event()))


def test_unexpected_error_returns_503_without_trace(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: Any,
) -> None:
    """A bug returns 503 internal_error, and the stack frames go to the log, not the response."""

    def broken_store(self: EventStore, event: Any, deadline: Any) -> Any:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(EventStore, "store", broken_store)
    response = send_webhook(stripe_event())
    assert response["statusCode"] == 503
    assert response_json(response) == {"error": "internal_error"}
    assert "simulated bug" not in response["body"]
    logged = captured_logs.messages("unexpected error, responding with 503 so that the provider retries")
    assert logged[0]["error_type"] == "RuntimeError"
    assert "broken_store" in logged[0]["stack_frames"]


def test_unexpected_database_error_log_has_no_payload(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: Any,
) -> None:
    """A database error whose context quotes the payload is logged with its SQLSTATE, never its text."""
    import pg8000.native

    def failing_store(self: EventStore, event: Any, deadline: Any) -> Any:
        # pg8000 puts PostgreSQL's error fields in args[0]; W (the context) quotes the JSON text.
        raise pg8000.native.DatabaseError(
            {"S": "ERROR", "C": "XX000", "M": "internal error", "W": f"JSON data, line 1: {event.payload_text[:80]}"}
        )

    monkeypatch.setattr(EventStore, "store", failing_store)
    event = stripe_event("customer.updated", {"email": "jenny.rosen@example.com", "id": "cus_1"})
    assert send_webhook(event)["statusCode"] == 503
    logged = captured_logs.messages("unexpected error, responding with 503 so that the provider retries")
    assert logged[0]["sqlstate"] == "XX000"
    assert "jenny.rosen@example.com" not in captured_logs.text()


def test_configuration_error_logged_with_variable(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: Any,
) -> None:
    """A missing variable returns 503 and the log names the variable."""
    monkeypatch.delenv("SIGNING_SECRET_ARN")
    replace_webhook_dependencies(None)
    assert send_webhook(stripe_event(), secret="whsec_any")["statusCode"] == 503
    assert "SIGNING_SECRET_ARN is not set" in captured_logs.text()


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_signing_secret_rotation_waits_for_reread_window(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """A new signing secret is not read again within 60 s of the last read, so the event is rejected."""
    env = webhook_env.env
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event())["statusCode"] == 200

    env.secrets_manager.put_secret_value(env.signing_secret_arn, "whsec_rotated")
    clock.now += 30
    response = send_webhook(stripe_event(), secret="whsec_rotated")
    assert response_json(response) == {"error": "invalid_signature"}
    assert secret_reads[env.signing_secret_arn] == 1


def test_signing_secret_rotation_picked_up_after_window(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """60 s after the last read, a mismatch re-reads the secret and the rotated secret is accepted."""
    env = webhook_env.env
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event())["statusCode"] == 200

    env.secrets_manager.put_secret_value(env.signing_secret_arn, "whsec_rotated")
    clock.now += 60
    assert response_json(send_webhook(stripe_event(), secret="whsec_rotated"))["status"] == "stored"
    assert send_webhook(stripe_event(), secret="whsec_rotated")["statusCode"] == 200
    assert secret_reads[env.signing_secret_arn] == 2


def test_forged_requests_reread_at_most_once_per_window(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """Many requests with a wrong signature cause at most one extra read per 60 s."""
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event())["statusCode"] == 200
    clock.now += 61
    for _ in range(5):
        assert send_webhook(stripe_event(), secret="whsec_forged")["statusCode"] == 400
    assert secret_reads[webhook_env.env.signing_secret_arn] == 2


def test_tls_required_but_server_without_tls(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: Any,
) -> None:
    """DB_SSLMODE=require against a server without TLS fails closed with 503, never in plain text."""
    monkeypatch.setenv("DB_SSLMODE", "require")
    replace_webhook_dependencies(None)
    assert_storage_unavailable(send_webhook(stripe_event()))
    assert (
        "SSL"
        in captured_logs.messages("storage unavailable, responding with 503 so that the provider retries")[0]["error"]
    )


def test_removed_signing_secret_rejected_after_reread_window(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """60 s after the last read, an event signed with a removed older secret re-reads the secret and is rejected."""
    env = webhook_env.env
    clock = FakeClock()
    env.secrets_manager.put_secret_value(env.signing_secret_arn, ["whsec_new_secret", env.signing_secret])
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event(), secret=env.signing_secret)["statusCode"] == 200

    env.secrets_manager.put_secret_value(env.signing_secret_arn, "whsec_new_secret")
    clock.now += 61
    response = send_webhook(stripe_event(), secret=env.signing_secret)
    assert response_json(response) == {"error": "invalid_signature"}
    assert secret_reads[env.signing_secret_arn] == 2


def test_older_signing_secret_not_reread_within_window(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """Events signed with the older of two secrets re-read the secret at most once per 60 s."""
    env = webhook_env.env
    clock = FakeClock()
    env.secrets_manager.put_secret_value(env.signing_secret_arn, ["whsec_new_secret", env.signing_secret])
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    for _ in range(3):
        assert send_webhook(stripe_event(), secret=env.signing_secret)["statusCode"] == 200
        clock.now += 10
    assert secret_reads[env.signing_secret_arn] == 1


def test_signing_secret_reread_after_max_age(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment, secret_reads: Counter[str]
) -> None:
    """Cached signing secrets 300 s old are read again, even when the newest one matches."""
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event())["statusCode"] == 200
    clock.now += 300
    assert send_webhook(stripe_event())["statusCode"] == 200
    assert secret_reads[webhook_env.env.signing_secret_arn] == 2


def test_failed_periodic_reread_keeps_valid_delivery(
    send_webhook: SendWebhook,
    webhook_env: WebhookEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: Any,
) -> None:
    """When the periodic re-read fails, a valid delivery is stored with the cached secrets instead of getting 503."""
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    assert send_webhook(stripe_event())["statusCode"] == 200

    def unreachable(self: SecretsManagerClient, secret_id: str, deadline: Any) -> str:
        raise SecretStoreUnreachable(f"GetSecretValue for {secret_id} failed: cannot reach the endpoint")

    monkeypatch.setattr(SecretsManagerClient, "get_secret_string", unreachable)
    clock.now += 301
    assert response_json(send_webhook(stripe_event()))["status"] == "stored"
    assert len(captured_logs.messages("re-reading the signing secret failed, still using the cached secrets")) == 1


def test_signing_secret_stored_as_json_string_accepted(
    send_webhook: SendWebhook, webhook_env: WebhookEnvironment
) -> None:
    """A signing secret stored as a JSON string, quotes included, is used as that one secret."""
    env = webhook_env.env
    env.secrets_manager.put_secret_value(env.signing_secret_arn, json.dumps(env.signing_secret))
    assert response_json(send_webhook(stripe_event()))["status"] == "stored"


@pytest.mark.parametrize("value", ['{"key": "whsec_leak"}', '["whsec_leak", 5]', '"whsec_leak', '""', "[]"])
def test_malformed_signing_secret_is_503_naming_arn(
    value: str, send_webhook: SendWebhook, webhook_env: WebhookEnvironment, captured_logs: Any
) -> None:
    """A signing secret of the wrong shape gives 503, logged with the ARN and never the value."""
    env = webhook_env.env
    env.secrets_manager.put_secret_value(env.signing_secret_arn, value)
    assert_storage_unavailable(send_webhook(stripe_event()))
    logged = captured_logs.messages("storage unavailable, responding with 503 so that the provider retries")
    assert env.signing_secret_arn in logged[0]["error"]
    assert "whsec_leak" not in captured_logs.text()
