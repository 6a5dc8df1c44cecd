"""Fixtures shared by every test tier: a real PostgreSQL and moto's Secrets Manager on 127.0.0.1.

Session fixtures start each server once per test run:

- ``postgres_server``: the embedded PostgreSQL 16 from pgserver (or the server that
  ``DATABASE_URL`` names), listening on 127.0.0.1.
- ``secrets_manager``: moto's server on 127.0.0.1 (``LocalSecretsManager``).

Per-test fixtures isolate data:

- ``database``: a new empty database with its own login role (``DatabaseInfo``), dropped
  after the test.
- ``function_env``: ``database`` plus both secrets in moto (the database secret as the
  JSON object RDS writes, the signing secret as one ``whsec_...`` value) and every
  environment variable the function reads, set with monkeypatch. The function's
  migrations are not applied here; tests apply them with the function's own code.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

# Set before any AWS library is imported: no telemetry, and credentials that real AWS
# rejects, so a call that escapes the loopback endpoints cannot use someone's real keys.
# A run against a deployed stack (AWS_SAM_STACK_NAME set) keeps the user's credentials.
os.environ["SAM_CLI_TELEMETRY"] = "0"
if not os.environ.get("AWS_SAM_STACK_NAME"):
    for _name, _value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        os.environ[_name] = _value
    os.environ.pop("AWS_PROFILE", None)

from local_stack.aws import LocalSecretsManager  # noqa: E402
from local_stack.postgres import DatabaseInfo, PostgresServer, server_from_environment  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """Start one PostgreSQL server for the whole test run and stop it at the end."""
    server = server_from_environment(tmp_path_factory.mktemp("postgres") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def secrets_manager() -> Iterator[LocalSecretsManager]:
    """Start moto's Secrets Manager on a loopback port for the whole test run."""
    manager = LocalSecretsManager()
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[DatabaseInfo]:
    """Create an empty database owned by a new login role; drop both after the test."""
    if postgres_server.can_restart and not _accepts_connections(postgres_server):
        # A test that stopped the server and failed before restarting it must not
        # break every test after it.
        postgres_server.start()
    info = postgres_server.create_database(f"webhook_test_{secrets.token_hex(6)}")
    try:
        yield info
    finally:
        if postgres_server.can_restart and not _accepts_connections(postgres_server):
            postgres_server.start()
        postgres_server.drop_database(info)


def _accepts_connections(server: PostgresServer) -> bool:
    try:
        server.connect_admin().close()
    except Exception:  # noqa: BLE001 - any failure means "not accepting"
        return False
    return True


@dataclass(frozen=True)
class FunctionEnvironment:
    """What ``function_env`` set up: the database, both secrets and the signing secret's value."""

    database: DatabaseInfo
    db_secret_arn: str
    signing_secret_arn: str
    signing_secret: str
    secrets_manager: LocalSecretsManager
    variables: dict[str, str]


@pytest.fixture
def function_env(
    database: DatabaseInfo,
    secrets_manager: LocalSecretsManager,
    monkeypatch: pytest.MonkeyPatch,
) -> FunctionEnvironment:
    """Store both secrets in moto and set every environment variable the function reads."""
    suffix = secrets.token_hex(4)
    db_secret_arn = secrets_manager.create_secret(f"test/{suffix}/db", database.secret_json())
    signing_secret = "whsec_" + secrets.token_hex(24)
    signing_secret_arn = secrets_manager.create_secret(f"test/{suffix}/signing", signing_secret)
    variables = {
        **secrets_manager.function_environment(),
        "DB_HOST": database.host,
        "DB_PORT": str(database.port),
        "DB_NAME": database.name,
        "DB_SECRET_ARN": db_secret_arn,
        "DB_SSLMODE": "disable",
        "DB_CONNECT_TIMEOUT_SECONDS": "5",
        "SIGNING_SECRET_ARN": signing_secret_arn,
        "SIGNATURE_TOLERANCE_SECONDS": "300",
        "POWERTOOLS_SERVICE_NAME": "payment-webhook",
        "POWERTOOLS_METRICS_NAMESPACE": "PaymentWebhook",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return FunctionEnvironment(
        database=database,
        db_secret_arn=db_secret_arn,
        signing_secret_arn=signing_secret_arn,
        signing_secret=signing_secret,
        secrets_manager=secrets_manager,
        variables=variables,
    )

