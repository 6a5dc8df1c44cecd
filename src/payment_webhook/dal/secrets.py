"""Cached secrets: the webhook signing secrets and the database credentials.

Both are read from Secrets Manager on first use and kept for the life of the execution
environment, with these re-reads:

- signing secrets, when no secret matches a signature, or when only a secret other than
  the newest matches (it may have been removed). Either re-read happens at most once per
  ``SIGNING_SECRET_REFRESH_SECONDS``, so an operator's rotation takes effect without a cold
  start while a stream of forged requests cannot turn into a stream of API calls. The
  cached secrets are also re-read once they are ``SIGNING_SECRET_MAX_AGE_SECONDS`` old.
  When that periodic re-read, or the one after an older secret matched, fails, the cached
  secrets stay in use, so an outage of Secrets Manager does not turn valid deliveries into
  503 responses;
- database credentials, when the database rejects them (RDS rotates the managed secret
  every seven days).

Values are never logged; messages name the secret by ARN.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from payment_webhook.deadline import Deadline
from payment_webhook.errors import SecretFormatError, StorageUnavailable

logger = logging.getLogger(__name__)

SIGNING_SECRET_REFRESH_SECONDS = 60.0
SIGNING_SECRET_MAX_AGE_SECONDS = 300.0


class SecretReader(Protocol):
    """Reads a secret's current value (``dal.secrets_client.SecretsManagerClient``)."""

    def get_secret_string(self, secret_id: str, deadline: Deadline) -> str:
        """Return the secret's current ``SecretString``."""
        ...


@dataclass(frozen=True)
class DatabaseCredentials:
    """User name and password from the RDS-managed secret; the password is left out of ``repr``."""

    username: str
    password: str = field(repr=False)


def parse_signing_secrets(value: str, secret_arn: str) -> tuple[str, ...]:
    """Return the signing secrets stored in a secret value, newest first.

    The value is one secret (``whsec_...``), the same as a JSON string (``"whsec_..."``
    with the quotes, as some tools store text), or, while a secret is rotated, a JSON array
    of secrets, newest first.

    Raises
    ------
    SecretFormatError
        The value is empty, a JSON object, a JSON string that is empty or not valid JSON, or
        an array that is not a non-empty list of non-empty strings. The message names the
        ARN and the fix, never the value.
    """
    text = value.strip()
    if text.startswith("["):
        secrets = _load_json(text, secret_arn, "starts with '[' but is not a JSON array")
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(secret, str) and secret.strip() for secret in secrets)
        ):
            raise SecretFormatError(
                f"signing secret {secret_arn} must be a JSON array of non-empty strings, newest first: "
                'store a value such as ["whsec_new", "whsec_old"]'
            )
        return tuple(secret.strip() for secret in secrets)
    if text.startswith('"'):
        # A whsec_ value stored as a JSON string. No secret the provider issues starts with a quote.
        secret = _load_json(text, secret_arn, "starts with '\"' but is not a JSON string")
        if not isinstance(secret, str) or not secret.strip():
            raise SecretFormatError(
                f"signing secret {secret_arn} is a JSON string without a secret: "
                "store the whsec_ value from the provider"
            )
        return (secret.strip(),)
    if not text:
        raise SecretFormatError(f"signing secret {secret_arn} is empty: store the whsec_ value from the provider")
    if text.startswith("{"):
        # A key/value secret made in the console; its JSON text would be used as the key.
        raise SecretFormatError(
            f"signing secret {secret_arn} is a JSON object: store the plain whsec_ value, or a JSON array of them"
        )
    return (text,)


def _load_json(text: str, secret_arn: str, problem: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise SecretFormatError(
            f"signing secret {secret_arn} {problem}: store one whsec_ value, "
            'or a JSON array such as ["whsec_new", "whsec_old"]'
        ) from None


def parse_database_credentials(value: str, secret_arn: str) -> DatabaseCredentials:
    """Return the user name and password of an RDS-managed secret ``{"username", "password"}``.

    Raises
    ------
    SecretFormatError
        The value is not a JSON object with non-empty string ``username`` and ``password``.
    """
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretFormatError(
            f'database secret {secret_arn} is not a JSON object: expected {{"username": ..., "password": ...}}'
        )
    username = document.get("username")
    password = document.get("password")
    if not isinstance(username, str) or not username:
        raise SecretFormatError(f"database secret {secret_arn} has no string 'username'")
    if not isinstance(password, str) or not password:
        raise SecretFormatError(f"database secret {secret_arn} has no string 'password'")
    return DatabaseCredentials(username=username, password=password)


class SigningSecretCache:
    """The webhook signing secrets, read once and re-read when they may have changed.

    Parameters
    ----------
    reader:
        Secrets Manager client.
    secret_arn:
        ARN of the signing secret.
    refresh_interval_seconds:
        Minimum time between two read attempts.
    max_age_seconds:
        Age of the cached secrets after which the next ``get`` reads them again.
    clock:
        Monotonic clock in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        reader: SecretReader,
        secret_arn: str,
        *,
        refresh_interval_seconds: float = SIGNING_SECRET_REFRESH_SECONDS,
        max_age_seconds: float = SIGNING_SECRET_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._secret_arn = secret_arn
        self._refresh_interval_seconds = refresh_interval_seconds
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._secrets: tuple[str, ...] | None = None
        # When the cached secrets were read, and when a read was last tried, failed or not.
        self._read_at: float | None = None
        self._attempted_at: float | None = None

    def get(self, deadline: Deadline) -> tuple[str, ...]:
        """Return the secrets, reading them on first use and again once the cached ones are too old.

        A failed periodic re-read is logged and the cached secrets are returned. The next
        attempt waits for the refresh interval.

        Raises
        ------
        SecretStoreError
            The first read failed or the value has the wrong shape.
        DeadlineExceeded
            The first read had no time left.
        """
        if self._secrets is None:
            return self._read(deadline)
        if self._clock() - (self._read_at or 0.0) >= self._max_age_seconds and self._may_attempt():
            self._read_keeping_cached(deadline, "the cached signing secrets reached their maximum age")
        return self._secrets

    def refresh_after_mismatch(self, deadline: Deadline) -> tuple[str, ...] | None:
        """Read the secrets again, unless the last attempt was less than the interval ago.

        Returns
        -------
        tuple[str, ...] | None
            The secrets just read, or None when the interval has not passed.

        Raises
        ------
        SecretStoreError
            The read failed; the attempt still counts, so the next one waits an interval.
        DeadlineExceeded
            No time was left for the read.
        """
        if not self._may_attempt():
            return None
        logger.info("re-reading the signing secret after a signature mismatch", extra={"secret_arn": self._secret_arn})
        return self._read(deadline)

    def refresh_after_older_match(self, deadline: Deadline) -> tuple[str, ...] | None:
        """Read the secrets again after only an older secret matched, unless the last attempt was recent.

        An older secret may have been removed since the last read. The read is skipped when
        the last attempt was less than the interval ago. A failed read is logged and the
        cached secrets stay, so the match is kept.

        Returns
        -------
        tuple[str, ...] | None
            The secrets just read, or None when the interval has not passed or the read failed.
        """
        if not self._may_attempt():
            return None
        logger.info(
            "re-reading the signing secret because only an older secret matched",
            extra={"secret_arn": self._secret_arn},
        )
        return self._read_keeping_cached(deadline, "an older signing secret matched")

    def _may_attempt(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._refresh_interval_seconds

    def _read(self, deadline: Deadline) -> tuple[str, ...]:
        self._attempted_at = self._clock()
        value = self._reader.get_secret_string(self._secret_arn, deadline)
        self._secrets = parse_signing_secrets(value, self._secret_arn)
        self._read_at = self._attempted_at
        return self._secrets

    def _read_keeping_cached(self, deadline: Deadline, reason: str) -> tuple[str, ...] | None:
        try:
            return self._read(deadline)
        except StorageUnavailable as exc:
            # The messages of these errors name the secret by ARN and never contain its value.
            logger.warning(
                "re-reading the signing secret failed, still using the cached secrets",
                extra={"secret_arn": self._secret_arn, "reason": reason, "error": str(exc)},
            )
            return None


class DatabaseCredentialsCache:
    """The database user name and password, read once and re-read when the database rejects them."""

    def __init__(self, reader: SecretReader, secret_arn: str) -> None:
        self._reader = reader
        self._secret_arn = secret_arn
        self._credentials: DatabaseCredentials | None = None

    def get(self, deadline: Deadline) -> DatabaseCredentials:
        """Return the cached credentials, reading them on first use.

        Raises
        ------
        SecretStoreError
            The read failed or the value has the wrong shape.
        """
        if self._credentials is None:
            return self.refresh(deadline)
        return self._credentials

    def refresh(self, deadline: Deadline) -> DatabaseCredentials:
        """Read the credentials again and return them.

        Raises
        ------
        SecretStoreError
            The read failed or the value has the wrong shape; the cached value is kept.
        """
        value = self._reader.get_secret_string(self._secret_arn, deadline)
        self._credentials = parse_database_credentials(value, self._secret_arn)
        return self._credentials
