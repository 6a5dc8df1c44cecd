"""Fixtures for the integration tests: the stack under test, its signing secret and database.

The stack under test is, in this order:

1. the deployed stack named by ``AWS_SAM_STACK_NAME`` (Outputs from CloudFormation, with
   the user's credentials and region);
2. a running local stack (``make local``) whose ``.local/stack-outputs.json`` names a
   webhook and an AWS endpoint that accept connections;
3. a local stack that this test session starts on free loopback ports, on the session's
   PostgreSQL server (``postgres_server``), with its files under the pytest temporary
   folder, and stops at the end.

Tests mark themselves with ``outputs.local_only`` (they read the database, which is private
in AWS) or ``outputs.aws_only`` (they read the deployed resources through the AWS APIs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import requests

from tests.integration.deliveries import RunIds
from tests.integration.outputs import (
    LOCAL_OUTPUTS_FILE,
    REPOSITORY_ROOT,
    OutputsError,
    StackOutputs,
    local_stack_is_running,
    outputs_from_cloudformation,
    outputs_from_file,
    stack_name_from_environment,
)

logger = logging.getLogger(__name__)

INTEGRATION_DIR = Path(__file__).resolve().parent
STACK_NAME = stack_name_from_environment()
# moto accepts any credentials; these keep a stray call from using real keys.
LOCAL_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
LOCAL_REGION = "us-east-1"
BUILD_DIR = REPOSITORY_ROOT / ".aws-sam" / "build"
FUNCTION_LOGICAL_ID = "PaymentWebhookFunction"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Let integration tests reach AWS when AWS_SAM_STACK_NAME names a deployed stack.

    pytest-socket allows only loopback hosts (see pyproject.toml). Against a deployed
    stack, the tests call API Gateway, CloudFormation, Secrets Manager, EC2, Lambda and
    CloudWatch Logs, whose addresses are not known in advance.
    """
    if STACK_NAME is None:
        return
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.enable_socket)


@pytest.fixture(scope="session")
def stack_outputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackOutputs]:
    """Return the Outputs of the stack under test, starting a local stack when none runs."""
    if STACK_NAME is not None:
        try:
            deployed = outputs_from_cloudformation(STACK_NAME)
        except OutputsError as exc:
            pytest.fail(f"AWS_SAM_STACK_NAME is {STACK_NAME}, but its Outputs cannot be read: {exc}")
        yield deployed
        return

    if LOCAL_OUTPUTS_FILE.exists():
        try:
            running = outputs_from_file(LOCAL_OUTPUTS_FILE)
        except OutputsError as exc:
            logger.warning("ignoring %s: %s", LOCAL_OUTPUTS_FILE, exc)
        else:
            if local_stack_is_running(running):
                logger.info("testing the running local stack of %s", LOCAL_OUTPUTS_FILE)
                yield running
                return
            logger.info("the local stack of %s is not running, so this session starts its own", LOCAL_OUTPUTS_FILE)

    from local_stack.stack import LocalStack

    # `make integration` and `make test` build first; a bare pytest run without a build
    # runs the sources instead. A build older than src/ stops the stack with a message.
    build_dir: Path | None = BUILD_DIR
    if not (BUILD_DIR / FUNCTION_LOGICAL_ID).is_dir():
        logger.info("%s has no %s package: the local stack runs the sources in src/", BUILD_DIR, FUNCTION_LOGICAL_ID)
        build_dir = None
    stack = LocalStack(
        work_dir=tmp_path_factory.mktemp("local-stack"),
        port=0,
        build_dir=build_dir,
        reporter=logger.info,
        postgres_server=request.getfixturevalue("postgres_server"),
    )
    stack.start()
    try:
        yield outputs_from_file(stack.outputs_file)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def webhook_url(stack_outputs: StackOutputs) -> str:
    """Return the WebhookUrl Output."""
    return stack_outputs["WebhookUrl"]


def _secrets_manager_client(outputs: StackOutputs) -> Any:
    import boto3

    if outputs.is_aws:
        return boto3.client("secretsmanager")
    return boto3.client(
        "secretsmanager",
        region_name=LOCAL_REGION,
        endpoint_url=outputs["AwsEndpointUrl"],
        **LOCAL_CREDENTIALS,
    )


def _read_secret_string(outputs: StackOutputs, output_key: str) -> str:
    client = _secrets_manager_client(outputs)
    return str(client.get_secret_value(SecretId=outputs[output_key])["SecretString"])


@pytest.fixture(scope="session")
def signing_secret(stack_outputs: StackOutputs) -> str:
    """Return the newest signing secret stored at WebhookSigningSecretArn."""
    value = _read_secret_string(stack_outputs, "WebhookSigningSecretArn")
    if value.lstrip().startswith("["):
        # During a rotation the value is a JSON array, newest first.
        return str(json.loads(value)[0])
    return value


def _open_database(outputs: StackOutputs, credentials: dict[str, str]) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        user=credentials["username"],
        password=credentials["password"],
        host=outputs["DbEndpointAddress"],
        port=int(outputs["DbEndpointPort"]),
        database=outputs["DbName"],
        timeout=10,
    )


@pytest.fixture(scope="session")
def connect_database(stack_outputs: StackOutputs) -> Callable[[], pg8000.native.Connection]:
    """Return a function that opens a connection to the local stack's database with the DbMasterSecretArn credentials."""
    if stack_outputs.is_aws:
        pytest.skip("the database of a deployed stack is private: only the local stack's can be read")
    credentials = json.loads(_read_secret_string(stack_outputs, "DbMasterSecretArn"))
    return lambda: _open_database(stack_outputs, credentials)


@pytest.fixture(scope="session")
def run_ids(stack_outputs: StackOutputs) -> Iterator[RunIds]:
    """Hand out unique event and payment intent ids; delete their rows from a local stack afterwards."""
    ids = RunIds()
    yield ids
    if stack_outputs.is_aws:
        # NOTE: rows written to a deployed stack stay: its database is private. Their ids
        # start with evt_it_ and pi_it_, so they are easy to find and remove.
        return
    credentials = json.loads(_read_secret_string(stack_outputs, "DbMasterSecretArn"))
    connection = _open_database(stack_outputs, credentials)
    try:
        connection.run("DELETE FROM webhook_events WHERE event_id = ANY(:ids)", ids=ids.event_ids)
        connection.run("DELETE FROM payments WHERE payment_intent_id = ANY(:ids)", ids=ids.payment_intent_ids)
    finally:
        connection.close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """Return a requests session for one test."""
    with requests.Session() as session:
        yield session
