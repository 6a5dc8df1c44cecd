"""Exceptions of the payment webhook.

Three families, by what the caller does with them:

- ``WebhookRejection``: the request is wrong. It carries the error code and HTTP status of
  the webhook contract, so the handler builds the response without a lookup table.
- ``StorageUnavailable``: the database or Secrets Manager could not be used. The webhook
  responds with 503 so that the provider retries.
- ``ConfigurationError`` and ``MigrationError``: the deployment is wrong. The message names
  the variable or the file and the fix.
"""

from __future__ import annotations

from http import HTTPStatus


class PaymentWebhookError(Exception):
    """Base class of every exception this package raises on purpose."""


class ConfigurationError(PaymentWebhookError):
    """An environment variable is missing or invalid; the message names it and the fix."""


class WebhookRejection(PaymentWebhookError):
    """A request that the webhook rejects with a 4xx response.

    Parameters
    ----------
    message:
        Explanation for logs and, for ``InvalidEvent``, for the response body.
    event_id:
        Id of the event when the body was parsed far enough to know it.
    """

    error_code: str = "invalid_request"
    http_status: HTTPStatus = HTTPStatus.BAD_REQUEST
    # Only messages that name a field of a verified body go back to the sender.
    message_in_response: bool = False

    def __init__(self, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event_id = event_id


class PayloadTooLarge(WebhookRejection):
    """The body exceeds the size limit."""

    error_code = "payload_too_large"
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class MissingSignature(WebhookRejection):
    """The Stripe-Signature header is absent or empty."""

    error_code = "missing_signature"


class MalformedSignature(WebhookRejection):
    """The Stripe-Signature header has no usable ``t`` or no ``v1`` element."""

    error_code = "malformed_signature"


class InvalidSignature(WebhookRejection):
    """No ``v1`` signature matches any configured signing secret."""

    error_code = "invalid_signature"


class TimestampOutsideTolerance(WebhookRejection):
    """The signed timestamp is older than the tolerance."""

    error_code = "timestamp_outside_tolerance"


class InvalidEvent(WebhookRejection):
    """The body is not JSON, or not an event this service can store; the message names the field."""

    error_code = "invalid_event"
    message_in_response = True


class StorageUnavailable(PaymentWebhookError):
    """The database or the secret store could not be used; nothing was written."""


class DeadlineExceeded(StorageUnavailable):
    """Too little of the invocation's time is left to start another network call."""


class DatabaseUnavailable(StorageUnavailable):
    """The database refused the connection, timed out, or lost the connection."""


class DatabaseAuthenticationFailed(DatabaseUnavailable):
    """The database rejected the credentials, also after reading the secret again."""


class SecretStoreError(StorageUnavailable):
    """A Secrets Manager request failed.

    Parameters
    ----------
    message:
        What failed, naming the secret by ARN (never by value).
    error_code:
        The Secrets Manager error type (``ResourceNotFoundException``), or None for
        network failures.
    """

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class SecretStoreUnreachable(SecretStoreError):
    """Secrets Manager could not be reached, timed out, throttled or failed with a 5xx."""


class SecretNotFound(SecretStoreError):
    """The secret ARN does not exist (ResourceNotFoundException)."""


class SecretAccessDenied(SecretStoreError):
    """The function's credentials may not read the secret or were rejected."""


class SecretRequestFailed(SecretStoreError):
    """Secrets Manager rejected the request for another reason (any other 4xx)."""


class SecretFormatError(SecretStoreError):
    """The secret's value does not have the expected shape, and the message names the problem."""


class MigrationError(PaymentWebhookError):
    """A schema migration could not be applied; the message names the file."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration file was changed after it was applied."""


class MigrationFailed(MigrationError):
    """A migration file's SQL failed; its transaction was rolled back."""
