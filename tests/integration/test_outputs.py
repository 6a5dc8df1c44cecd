"""The Outputs helper, against hand-written Outputs files and a stubbed CloudFormation client.

These tests need no stack: they check how the other integration tests find theirs.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from tests.integration.outputs import (
    OutputsError,
    StackOutputs,
    accepts_connections,
    local_stack_is_running,
    outputs_from_cloudformation,
    outputs_from_file,
)

STACK_ARN = "arn:aws:cloudformation:eu-west-1:123456789012:stack/payment-webhook-dev-abcd/0f1e2d3c"


def _write_outputs(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps([{"OutputKey": key, "OutputValue": value} for key, value in values.items()]))
    return path


def _stubbed_cloudformation(outputs: list[dict[str, str]]) -> tuple[object, Stubber]:
    client = boto3.client(
        "cloudformation",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
    )
    stubber = Stubber(client)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "payment-webhook-dev-abcd",
                    "StackId": STACK_ARN,
                    "CreationTime": "2024-12-04T11:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": outputs,
                }
            ]
        },
        {"StackName": "payment-webhook-dev-abcd"},
    )
    return client, stubber


def test_outputs_from_file_reads_values(tmp_path: Path) -> None:
    """A describe-stacks style file becomes a dict of OutputKey to OutputValue."""
    path = _write_outputs(tmp_path / "stack-outputs.json", {"WebhookUrl": "http://127.0.0.1:3000/webhooks/payments"})
    outputs = outputs_from_file(path)
    assert outputs["WebhookUrl"] == "http://127.0.0.1:3000/webhooks/payments"
    assert outputs.is_aws is False


def test_outputs_missing_key_fails_with_its_name(tmp_path: Path) -> None:
    """Asking for an Output the stack lacks fails the test, naming the key and the stack."""
    outputs = outputs_from_file(_write_outputs(tmp_path / "stack-outputs.json", {"VpcId": "local-vpc"}))
    with pytest.raises(pytest.fail.Exception, match="Output 'WebhookUrl' is missing from stack local"):
        outputs["WebhookUrl"]


def test_outputs_get_returns_none_for_missing_key(tmp_path: Path) -> None:
    """get() returns None for an Output the stack lacks, such as NatGatewayId outside prod."""
    outputs = outputs_from_file(_write_outputs(tmp_path / "stack-outputs.json", {"VpcId": "local-vpc"}))
    assert outputs.get("NatGatewayId") is None


def test_outputs_from_missing_file_says_how_to_start(tmp_path: Path) -> None:
    """A missing Outputs file raises OutputsError that names make local."""
    with pytest.raises(OutputsError, match="make local"):
        outputs_from_file(tmp_path / "absent.json")


def test_outputs_from_file_rejects_other_shapes(tmp_path: Path) -> None:
    """A JSON object instead of the describe-stacks list raises OutputsError."""
    path = tmp_path / "stack-outputs.json"
    path.write_text(json.dumps({"WebhookUrl": "http://127.0.0.1:3000/webhooks/payments"}))
    with pytest.raises(OutputsError, match="must be a list"):
        outputs_from_file(path)


def test_outputs_from_cloudformation_reads_stack() -> None:
    """Outputs come from DescribeStacks of the named stack."""
    client, stubber = _stubbed_cloudformation(
        [{"OutputKey": "WebhookUrl", "OutputValue": "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/webhooks/payments"}]
    )
    with stubber:
        outputs = outputs_from_cloudformation("payment-webhook-dev-abcd", client)
    assert outputs["WebhookUrl"].endswith("/webhooks/payments")
    assert outputs.is_aws is True


def test_outputs_from_cloudformation_missing_key_names_stack() -> None:
    """A key the deployed stack lacks fails with the stack's name."""
    client, stubber = _stubbed_cloudformation([])
    with stubber:
        outputs = outputs_from_cloudformation("payment-webhook-dev-abcd", client)
    with pytest.raises(pytest.fail.Exception, match="Output 'KmsKeyArn' is missing from stack payment-webhook-dev-abcd"):
        outputs["KmsKeyArn"]


def test_outputs_from_cloudformation_unknown_stack_raises() -> None:
    """A stack that does not exist raises OutputsError with the stack's name."""
    client = boto3.client(
        "cloudformation", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_stacks", service_error_code="ValidationError", service_message="Stack with id nope does not exist"
    )
    with stubber, pytest.raises(OutputsError, match="describing stack nope failed"):
        outputs_from_cloudformation("nope", client)


def test_accepts_connections_false_for_closed_port() -> None:
    """A loopback port without a listener does not count as a running stack."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert accepts_connections(f"http://127.0.0.1:{closed_port}/webhooks/payments") is False


def test_accepts_connections_true_for_listener() -> None:
    """A loopback port with a listener counts as accepting connections."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert accepts_connections(f"http://127.0.0.1:{port}/webhooks/payments") is True


def test_local_stack_is_running_needs_both_endpoints() -> None:
    """A stack whose AWS endpoint is gone is not running, even if its webhook port accepts connections."""
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))
        outputs = StackOutputs(
            stack_name="local",
            values={
                "WebhookUrl": f"http://127.0.0.1:{listener.getsockname()[1]}/webhooks/payments",
                "AwsEndpointUrl": f"http://127.0.0.1:{closed.getsockname()[1]}",
            },
            source="test",
            is_aws=False,
        )
        assert local_stack_is_running(outputs) is False
