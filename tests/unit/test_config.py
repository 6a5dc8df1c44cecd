"""Settings read from environment variables."""

from __future__ import annotations

import pytest

from payment_webhook.config import (
    is_loopback_host,
    load_database_settings,
    load_secrets_manager_settings,
    load_webhook_settings,
)
from payment_webhook.errors import ConfigurationError

BASE_ENVIRONMENT = {
    "DB_HOST": "db.internal.example",
    "DB_PORT": "5432",
    "DB_NAME": "payments",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
    "DB_SSLMODE": "require",
    "DB_CONNECT_TIMEOUT_SECONDS": "5",
    "SIGNING_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:signing",
    "SIGNATURE_TOLERANCE_SECONDS": "300",
    "AWS_REGION": "eu-west-1",
}


def environment(**changes: str | None) -> dict[str, str]:
    env = dict(BASE_ENVIRONMENT)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def configuration_error(**changes: str | None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_webhook_settings(environment(**changes))
    return str(caught.value)


def test_webhook_settings_read() -> None:
    """Every variable is read into typed settings."""
    settings = load_webhook_settings(environment())
    assert settings.database.port == 5432
    assert settings.database.connect_timeout_seconds == 5.0
    assert settings.signature_tolerance_seconds == 300


def test_defaults_when_optional_unset() -> None:
    """Port, TLS mode, timeout and tolerance have defaults."""
    settings = load_webhook_settings(
        environment(DB_PORT=None, DB_SSLMODE=None, DB_CONNECT_TIMEOUT_SECONDS=None, SIGNATURE_TOLERANCE_SECONDS=None)
    )
    assert settings.database.port == 5432
    assert settings.database.sslmode == "require"
    assert settings.signature_tolerance_seconds == 300


def test_regional_endpoint_by_default() -> None:
    """Without an endpoint variable the regional Secrets Manager endpoint is used."""
    assert load_secrets_manager_settings(environment()).endpoint_url == "https://secretsmanager.eu-west-1.amazonaws.com"


def test_service_endpoint_variable_wins() -> None:
    """AWS_ENDPOINT_URL_SECRETS_MANAGER is preferred over AWS_ENDPOINT_URL."""
    settings = load_secrets_manager_settings(
        environment(AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:5001/", AWS_ENDPOINT_URL="http://127.0.0.1:5002")
    )
    assert settings.endpoint_url == "http://127.0.0.1:5001"


def test_generic_endpoint_variable_used() -> None:
    """AWS_ENDPOINT_URL is used when the service-specific variable is unset."""
    settings = load_secrets_manager_settings(environment(AWS_ENDPOINT_URL="http://127.0.0.1:5002"))
    assert settings.endpoint_url == "http://127.0.0.1:5002"


def test_default_region_variable_used() -> None:
    """AWS_DEFAULT_REGION is used when AWS_REGION is unset."""
    settings = load_secrets_manager_settings(environment(AWS_REGION=None, AWS_DEFAULT_REGION="us-west-2"))
    assert settings.region == "us-west-2"


@pytest.mark.parametrize("name", ["DB_HOST", "DB_NAME", "DB_SECRET_ARN", "SIGNING_SECRET_ARN"])
def test_missing_required_variable_named(name: str) -> None:
    """A missing required variable is named in the error."""
    assert configuration_error(**{name: None}).startswith(f"{name} is not set")


def test_missing_region_named() -> None:
    """Without any region variable the error names AWS_REGION."""
    assert configuration_error(AWS_REGION=None).startswith("AWS_REGION is not set")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_PORT", "0"),
        ("DB_PORT", "70000"),
        ("DB_PORT", "five"),
        ("DB_CONNECT_TIMEOUT_SECONDS", "0"),
        ("DB_CONNECT_TIMEOUT_SECONDS", "6"),
        ("DB_CONNECT_TIMEOUT_SECONDS", "nan"),
        ("SIGNATURE_TOLERANCE_SECONDS", "0"),
        ("SIGNATURE_TOLERANCE_SECONDS", "1.5"),
        ("DB_SSLMODE", "verify-full"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5000/prefix"),
    ],
)
def test_invalid_value_named_with_value(name: str, value: str) -> None:
    """An invalid value is named together with the variable."""
    assert configuration_error(**{name: value}).startswith(f"{name} '{value}'")


def test_sslmode_disable_rejected_for_remote_host() -> None:
    """TLS may be disabled only for a loopback host, and the error names the fix."""
    message = configuration_error(DB_SSLMODE="disable")
    assert "use DB_SSLMODE=require" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_sslmode_disable_allowed_for_loopback(host: str) -> None:
    """Loopback hosts may disable TLS."""
    assert load_database_settings(environment(DB_HOST=host, DB_SSLMODE="disable")).sslmode == "disable"


@pytest.mark.parametrize("host", ["10.0.0.1", "db.local", "localhost.example.com", "0.0.0.0"])
def test_non_loopback_hosts_detected(host: str) -> None:
    """Private addresses and names are not loopback."""
    assert not is_loopback_host(host)
