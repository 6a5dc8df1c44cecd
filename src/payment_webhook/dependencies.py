"""The webhook's long-lived objects, built once per execution environment.

Settings, the secret caches and the database connection live as long as the Lambda
execution environment, so warm invocations skip Secrets Manager and the connect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from payment_webhook.config import WebhookSettings, load_webhook_settings
from payment_webhook.dal.connection import ConnectionManager
from payment_webhook.dal.events import EventStore
from payment_webhook.dal.secrets import DatabaseCredentialsCache, SigningSecretCache
from payment_webhook.dal.secrets_client import SecretsManagerClient


@dataclass(frozen=True)
class WebhookDependencies:
    """Long-lived objects of the webhook handler: settings, secret caches, connection and store."""

    settings: WebhookSettings
    signing_secrets: SigningSecretCache
    connections: ConnectionManager
    store: EventStore


_webhook_dependencies: WebhookDependencies | None = None


def build_webhook_dependencies(
    settings: WebhookSettings, *, clock: Callable[[], float] = time.monotonic
) -> WebhookDependencies:
    """Create the secret caches, the connection manager and the event store for ``settings``.

    ``clock`` times the signing secret's re-read interval; tests pass a fake one.
    """
    client = SecretsManagerClient(settings.secrets_manager)
    connections = ConnectionManager(settings.database, DatabaseCredentialsCache(client, settings.database.secret_arn))
    return WebhookDependencies(
        settings=settings,
        signing_secrets=SigningSecretCache(client, settings.signing_secret_arn, clock=clock),
        connections=connections,
        store=EventStore(connections),
    )


def get_webhook_dependencies() -> WebhookDependencies:
    """Return the execution environment's dependencies, building them on first use.

    A configuration error is raised again on every call until the environment is fixed;
    only a successful build is kept.

    Raises
    ------
    ConfigurationError
        An environment variable is missing or invalid.
    """
    global _webhook_dependencies
    if _webhook_dependencies is None:
        _webhook_dependencies = build_webhook_dependencies(load_webhook_settings())
    return _webhook_dependencies


def replace_webhook_dependencies(dependencies: WebhookDependencies | None = None) -> None:
    """Close the current connection and use ``dependencies`` from now on.

    With None, the next invocation builds everything again, as in a new execution
    environment. Tests use this to start clean or to pass objects with a fake clock.
    """
    global _webhook_dependencies
    if _webhook_dependencies is not None:
        _webhook_dependencies.connections.close()
    _webhook_dependencies = dependencies
