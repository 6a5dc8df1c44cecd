"""Cached secrets: the webhook signing secrets and the database credentials.

Both are read from Secrets Manager on first use and kept for the life of the execution
environment. Each cache re-reads its secret only when the cached value stops working:

- signing secrets, when no secret matches a signature, at most once per
  ``SIGNING_SECRET_REFRESH_SECONDS``, so an operator's rotation takes effect without a cold
  start while a stream of forged requests cannot turn into a stream of API calls;
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
from payment_webhook.errors import SecretFormatError

logger = logging.getLogger(__name__)

SIGNING_SECRET_REFRESH_SECONDS = 60.0


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

    The value is one secret (``whsec_...``) or, while a secret is rotated, a JSON array of
    secrets, newest first.

    Raises
    ------
    SecretFormatError
        The value is empty, a JSON object, or an array that is not a non-empty list of
        non-empty strings.
    """
    text = value.strip()
    if text.startswith("["):
        try:
            secrets = json.loads(text)
        except ValueError:
            raise SecretFormatError(
                f"signing secret {secret_arn} starts with '[' but is not a JSON array: "
                'store one whsec_ value, or a JSON array such as ["whsec_new", "whsec_old"]'
            ) from None
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(secret, str) and secret.strip() for secret in secrets)
        ):
            raise SecretFormatError(
                f"signing secret {secret_arn} must be a JSON array of non-empty strings, newest first"
            )
        return tuple(secret.strip() for secret in secrets)
    if not text:
        raise SecretFormatError(f"signing secret {secret_arn} is empty: store the whsec_ value from the provider")
    if text.startswith("{"):
        # A key/value secret made in the console; its JSON text would be used as the key.
        raise SecretFormatError(
            f"signing secret {secret_arn} is a JSON object: store the plain whsec_ value, or a JSON array of them"
        )
    return (text,)


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
    """The webhook signing secrets, read once and re-read after a mismatch at most once per interval.

    Parameters
    ----------
    reader:
        Secrets Manager client.
    secret_arn:
        ARN of the signing secret.
    refresh_interval_seconds:
        Minimum time between two reads.
    clock:
        Monotonic clock in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        reader: SecretReader,
        secret_arn: str,
        *,
        refresh_interval_seconds: float = SIGNING_SECRET_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._secret_arn = secret_arn
        self._refresh_interval_seconds = refresh_interval_seconds
        self._clock = clock
        self._secrets: tuple[str, ...] | None = None
        self._last_read_at: float | None = None

    def get(self, deadline: Deadline) -> tuple[str, ...]:
        """Return the cached secrets, reading them on first use.

        Raises
        ------
        SecretStoreError
            The first read failed or the value has the wrong shape.
        """
        if self._secrets is None:
            return self._read(deadline)
        return self._secrets

    def refresh_after_mismatch(self, deadline: Deadline) -> tuple[str, ...] | None:
        """Read the secrets again, unless the last read was less than the interval ago.

        Returns
        -------
        tuple[str, ...] | None
            The secrets just read, or None when the interval has not passed.

        Raises
        ------
        SecretStoreError
            The read failed; the attempt still counts, so the next one waits an interval.
        """
        now = self._clock()
        if self._last_read_at is not None and now - self._last_read_at < self._refresh_interval_seconds:
            return None
        logger.info("re-reading the signing secret after a signature mismatch", extra={"secret_arn": self._secret_arn})
        return self._read(deadline)

    def _read(self, deadline: Deadline) -> tuple[str, ...]:
        self._last_read_at = self._clock()
        value = self._reader.get_secret_string(self._secret_arn, deadline)
        self._secrets = parse_signing_secrets(value, self._secret_arn)
        return self._secrets


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
