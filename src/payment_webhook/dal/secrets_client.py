"""A minimal Secrets Manager ``GetSecretValue`` client on the standard library.

boto3 is not bundled with the function because importing it takes longer than the whole
cold-start budget of the handler. This client makes the one call the function needs:
a JSON 1.1 POST signed with AWS Signature Version 4, with a short timeout and at most
``MAX_ATTEMPTS`` attempts.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from payment_webhook.config import SecretsManagerSettings
from payment_webhook.deadline import Deadline
from payment_webhook.errors import (
    ConfigurationError,
    SecretAccessDenied,
    SecretFormatError,
    SecretNotFound,
    SecretRequestFailed,
    SecretStoreError,
    SecretStoreUnreachable,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "secretsmanager"
GET_SECRET_VALUE_TARGET = "secretsmanager.GetSecretValue"
CONTENT_TYPE = "application/x-amz-json-1.1"
DEFAULT_TIMEOUT_SECONDS = 2.0
MAX_ATTEMPTS = 2
RETRY_DELAY_SECONDS = 0.1
# A secret value is at most 64 KiB, so a much larger body is not a Secrets Manager response.
MAX_RESPONSE_BYTES = 1_048_576

_ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
    }
)
_THROTTLING_CODES = frozenset({"ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"})


@dataclass(frozen=True)
class AwsCredentials:
    """Access key, secret key and optional session token; the last two never appear in ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AwsCredentials:
        """Read ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``, as Lambda sets them.

        Raises
        ------
        ConfigurationError
            The access key id or the secret access key is not set.
        """
        env = os.environ if environ is None else environ
        access_key_id = env.get("AWS_ACCESS_KEY_ID", "")
        secret_access_key = env.get("AWS_SECRET_ACCESS_KEY", "")
        if not access_key_id or not secret_access_key:
            raise ConfigurationError(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set: Lambda sets them from the "
                "function's role; elsewhere export credentials (dummy ones for the local stack)"
            )
        return cls(access_key_id, secret_access_key, env.get("AWS_SESSION_TOKEN") or None)


def sign_v4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime.datetime,
) -> dict[str, str]:
    """Sign a request with AWS Signature Version 4 and return the headers to send.

    Every header in ``headers`` is signed, together with ``Host``, ``X-Amz-Date`` and,
    when the credentials have a session token, ``X-Amz-Security-Token``. The URL must
    have no query string.

    Parameters
    ----------
    method, url, headers, body:
        The request.
    credentials:
        Keys to sign with.
    region, service:
        The credential scope, for example ``us-east-1`` and ``secretsmanager``.
    now:
        Signing time, timezone-aware.

    Returns
    -------
    dict[str, str]
        ``headers`` plus ``Host``, ``X-Amz-Date``, the token header when needed, and
        ``Authorization``.
    """
    parts = urlsplit(url)
    amz_date = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {name: value for name, value in headers.items() if name.lower() != "host"}
    signed["Host"] = _host_header(url)
    signed["X-Amz-Date"] = amz_date
    if credentials.session_token:
        signed["X-Amz-Security-Token"] = credentials.session_token

    canonical_headers = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
    signed_header_names = ";".join(sorted(canonical_headers))
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            "",
            "".join(f"{name}:{canonical_headers[name]}\n" for name in sorted(canonical_headers)),
            signed_header_names,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    credential_scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            credential_scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    signing_key = _derive_signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key_id}/{credential_scope}, "
        f"SignedHeaders={signed_header_names}, Signature={signature}"
    )
    return signed


def _derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_access_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    return host


class SecretsManagerClient:
    """Reads secret values with ``GetSecretValue``.

    Parameters
    ----------
    settings:
        Region and endpoint URL.
    timeout_seconds:
        Connect and read timeout of one attempt.
    max_attempts:
        Attempts per call; only network errors, throttling and 5xx responses are retried.
    credentials_provider:
        Returns the credentials to sign with; read on every call because Lambda may
        replace them.
    """

    def __init__(
        self,
        settings: SecretsManagerSettings,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        credentials_provider: Callable[[], AwsCredentials] = AwsCredentials.from_environment,
    ) -> None:
        self._settings = settings
        self._timeout_seconds = timeout_seconds
        self._max_attempts = max_attempts
        self._credentials_provider = credentials_provider

    def get_secret_string(self, secret_id: str, deadline: Deadline) -> str:
        """Return the ``SecretString`` of the secret's current version.

        Parameters
        ----------
        secret_id:
            ARN or name of the secret.
        deadline:
            No attempt starts after it; each attempt's timeout is cut to the time left.

        Returns
        -------
        str
            The secret's value. Callers must never log it.

        Raises
        ------
        SecretStoreUnreachable
            Network error, timeout, throttling or 5xx on every attempt.
        SecretNotFound, SecretAccessDenied, SecretRequestFailed
            Secrets Manager rejected the request (not retried).
        SecretFormatError
            The response has no ``SecretString`` (a binary secret) or is not JSON.
        DeadlineExceeded
            The deadline passed before the first attempt.
        """
        body = json.dumps({"SecretId": secret_id}).encode("utf-8")
        attempt = 1
        while True:
            timeout = deadline.timeout(self._timeout_seconds, f"GetSecretValue for {secret_id}")
            try:
                return self._get_secret_string_once(secret_id, body, timeout)
            except SecretStoreUnreachable as exc:
                time_left = deadline.remaining() - RETRY_DELAY_SECONDS
                if attempt >= self._max_attempts or time_left <= 0.1:
                    raise
                logger.warning(
                    "Secrets Manager request failed, retrying",
                    extra={"secret_arn": secret_id, "error": str(exc), "attempt": attempt},
                )
            time.sleep(RETRY_DELAY_SECONDS)
            attempt += 1

    def _get_secret_string_once(self, secret_id: str, body: bytes, timeout: float) -> str:
        url = self._settings.endpoint_url + "/"
        headers = sign_v4(
            method="POST",
            url=url,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": GET_SECRET_VALUE_TARGET},
            body=body,
            credentials=self._credentials_provider(),
            region=self._settings.region,
            service=SERVICE_NAME,
            now=datetime.datetime.now(datetime.UTC),
        )
        status, response_body = _post(url, headers, body, timeout, secret_id)
        if status == http.client.OK:
            return _secret_string_from(response_body, secret_id)
        raise _error_from(status, response_body, secret_id)


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float, secret_id: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("POST", parts.path or "/", body=body, headers=dict(headers))
        response = connection.getresponse()
        response_body = response.read(MAX_RESPONSE_BYTES + 1)
    except TimeoutError as exc:
        raise SecretStoreUnreachable(
            f"GetSecretValue for {secret_id} timed out after {timeout:.1f} s at {parts.netloc}"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise SecretStoreUnreachable(
            f"GetSecretValue for {secret_id} failed: cannot reach {parts.netloc}: {exc}"
        ) from exc
    finally:
        connection.close()
    if len(response_body) > MAX_RESPONSE_BYTES:
        raise SecretFormatError(f"GetSecretValue for {secret_id} returned more than {MAX_RESPONSE_BYTES} bytes")
    return response.status, response_body


def _secret_string_from(response_body: bytes, secret_id: str) -> str:
    try:
        document = json.loads(response_body)
    except ValueError:
        raise SecretFormatError(f"GetSecretValue for {secret_id} returned a body that is not JSON") from None
    value = document.get("SecretString") if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise SecretFormatError(f"secret {secret_id} has no SecretString: store the value as text, not as SecretBinary")
    return value


def _error_from(status: int, response_body: bytes, secret_id: str) -> SecretStoreError:
    error_code, message = _parse_error(response_body)
    description = f"GetSecretValue for {secret_id} failed with HTTP {status}"
    if error_code:
        description += f" {error_code}"
    if message:
        description += f": {message}"
    if status >= http.client.INTERNAL_SERVER_ERROR or error_code in _THROTTLING_CODES:
        return SecretStoreUnreachable(description, error_code=error_code)
    if error_code == "ResourceNotFoundException":
        return SecretNotFound(description + " (check the secret ARN variable)", error_code=error_code)
    if error_code in _ACCESS_DENIED_CODES or status == http.client.FORBIDDEN:
        return SecretAccessDenied(
            description + " (check the function role's secretsmanager:GetSecretValue permission)",
            error_code=error_code,
        )
    return SecretRequestFailed(description, error_code=error_code)


def _parse_error(response_body: bytes) -> tuple[str | None, str | None]:
    """Return the error type (without its namespace) and message of an AWS JSON error body."""
    try:
        document = json.loads(response_body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    error_type = document.get("__type")
    message = document.get("message") or document.get("Message")
    error_code = error_type.rsplit("#", 1)[-1] if isinstance(error_type, str) else None
    return error_code, message if isinstance(message, str) else None
