"""Settings read from environment variables, validated once at the edge.

Every error names the variable, the value that was read and the fix, so a misconfigured
deployment shows its cause in the first log line.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from payment_webhook.errors import ConfigurationError

DEFAULT_DB_PORT = 5432
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
# The function timeout is 10 s, and a cold invocation may also read two secrets.
MAX_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300
MAX_SIGNATURE_TOLERANCE_SECONDS = 86_400
SSL_MODES = ("require", "disable")


@dataclass(frozen=True)
class DatabaseSettings:
    """Database address, name, TLS mode and connect timeout; credentials come from ``secret_arn``."""

    host: str
    port: int
    name: str
    secret_arn: str
    sslmode: str
    connect_timeout_seconds: float


@dataclass(frozen=True)
class SecretsManagerSettings:
    """Region and endpoint of the Secrets Manager API."""

    region: str
    endpoint_url: str


@dataclass(frozen=True)
class WebhookSettings:
    """Everything the webhook function reads from its environment."""

    database: DatabaseSettings
    secrets_manager: SecretsManagerSettings
    signing_secret_arn: str
    signature_tolerance_seconds: int


def load_database_settings(environ: Mapping[str, str] | None = None) -> DatabaseSettings:
    """Read the ``DB_*`` variables.

    Parameters
    ----------
    environ:
        Variables to read; ``os.environ`` when None.

    Returns
    -------
    DatabaseSettings
        Validated values.

    Raises
    ------
    ConfigurationError
        A variable is missing or invalid; the message names it and the fix.
    """
    env = os.environ if environ is None else environ
    host = _required(env, "DB_HOST", "set it to the database endpoint address")
    sslmode = env.get("DB_SSLMODE", "require").strip() or "require"
    if sslmode not in SSL_MODES:
        raise ConfigurationError(f"DB_SSLMODE '{sslmode}' is invalid: use 'require' or 'disable'")
    if sslmode == "disable" and not is_loopback_host(host):
        raise ConfigurationError(
            f"DB_SSLMODE 'disable' is allowed only for a loopback DB_HOST, and DB_HOST is '{host}': "
            "use DB_SSLMODE=require"
        )
    return DatabaseSettings(
        host=host,
        port=_integer(env, "DB_PORT", DEFAULT_DB_PORT, minimum=1, maximum=65535),
        name=_required(env, "DB_NAME", "set it to the database name (the DbName parameter)"),
        secret_arn=_required(env, "DB_SECRET_ARN", "set it to the ARN of the RDS-managed database secret"),
        sslmode=sslmode,
        connect_timeout_seconds=_positive_seconds(
            env, "DB_CONNECT_TIMEOUT_SECONDS", DEFAULT_CONNECT_TIMEOUT_SECONDS, MAX_CONNECT_TIMEOUT_SECONDS
        ),
    )


def load_secrets_manager_settings(environ: Mapping[str, str] | None = None) -> SecretsManagerSettings:
    """Read the region and the Secrets Manager endpoint.

    The endpoint is ``AWS_ENDPOINT_URL_SECRETS_MANAGER``, else ``AWS_ENDPOINT_URL``, else
    the regional endpoint, the same order the AWS SDKs use.

    Raises
    ------
    ConfigurationError
        The region is missing or an endpoint URL is not an http(s) URL.
    """
    env = os.environ if environ is None else environ
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    if not region:
        raise ConfigurationError("AWS_REGION is not set: set it to the region of the Secrets Manager endpoint")
    for name in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"):
        value = env.get(name, "").strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ConfigurationError(
                    f"{name} '{value}' is invalid: use a URL such as http://127.0.0.1:5000 with no path"
                )
            return SecretsManagerSettings(region=region, endpoint_url=value.rstrip("/"))
    return SecretsManagerSettings(region=region, endpoint_url=f"https://secretsmanager.{region}.amazonaws.com")


def load_webhook_settings(environ: Mapping[str, str] | None = None) -> WebhookSettings:
    """Read every variable of the webhook function.

    Raises
    ------
    ConfigurationError
        A variable is missing or invalid; the message names it and the fix.
    """
    env = os.environ if environ is None else environ
    return WebhookSettings(
        database=load_database_settings(env),
        secrets_manager=load_secrets_manager_settings(env),
        signing_secret_arn=_required(env, "SIGNING_SECRET_ARN", "set it to the ARN of the webhook signing secret"),
        signature_tolerance_seconds=_integer(
            env,
            "SIGNATURE_TOLERANCE_SECONDS",
            DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
            minimum=1,
            maximum=MAX_SIGNATURE_TOLERANCE_SECONDS,
        ),
    )


def is_loopback_host(host: str) -> bool:
    """Return whether ``host`` is ``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _required(env: Mapping[str, str], name: str, fix: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set: {fix}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} '{raw}' is invalid: use a whole number from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} '{raw}' is out of range: use a whole number from {minimum} to {maximum}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name} '{raw}' is invalid: use a number of seconds above 0 and at most {maximum:g}"
        ) from None
    if not 0 < value <= maximum:
        raise ConfigurationError(
            f"{name} '{raw}' is out of range: use a number of seconds above 0 and at most {maximum:g}"
        )
    return value
