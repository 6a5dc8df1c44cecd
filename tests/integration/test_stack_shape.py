"""The deployed stack's resources, read through the AWS service APIs.

These tests run only when ``AWS_SAM_STACK_NAME`` names a deployed stack, with the user's
credentials and region. The local stack has no VPC, log group or Lambda function to read.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.outputs import StackOutputs, aws_only

pytestmark = aws_only

# NAT gateways in these states still exist (and cost money).
LIVE_NAT_STATES = ["pending", "available", "deleting"]


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def _live_nat_gateway_ids(vpc_id: str) -> list[str]:
    paginator = _client("ec2").get_paginator("describe_nat_gateways")
    pages = paginator.paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "state", "Values": LIVE_NAT_STATES}]
    )
    return [gateway["NatGatewayId"] for page in pages for gateway in page["NatGateways"]]


def _function_configuration(stack_outputs: StackOutputs) -> dict[str, Any]:
    return _client("lambda").get_function_configuration(FunctionName=stack_outputs["FunctionName"])


def test_nat_gateway_exists_only_in_prod(stack_outputs: StackOutputs) -> None:
    """The VPC has a NAT gateway in prod, and none in dev or staging."""
    nat_gateway_ids = _live_nat_gateway_ids(stack_outputs["VpcId"])
    if stack_outputs["Environment"] == "prod":
        assert nat_gateway_ids == [stack_outputs["NatGatewayId"]]
    else:
        assert nat_gateway_ids == []


def test_nat_gateway_output_only_in_prod(stack_outputs: StackOutputs) -> None:
    """The NatGatewayId Output exists exactly when Environment is prod."""
    has_output = stack_outputs.get("NatGatewayId") is not None
    assert has_output is (stack_outputs["Environment"] == "prod")


def test_function_log_group_is_encrypted_with_stack_key(stack_outputs: StackOutputs) -> None:
    """The function's log group is encrypted with the KmsKeyArn key."""
    name = stack_outputs["FunctionLogGroupName"]
    groups = _client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    matching = [group for group in groups if group["logGroupName"] == name]
    if not matching:
        pytest.fail(f"log group {name} (Output FunctionLogGroupName) does not exist")
    assert matching[0].get("kmsKeyId") == stack_outputs["KmsKeyArn"]


def test_function_log_group_has_retention(stack_outputs: StackOutputs) -> None:
    """The function's log group keeps logs for a limited number of days."""
    name = stack_outputs["FunctionLogGroupName"]
    groups = _client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    matching = [group for group in groups if group["logGroupName"] == name]
    if not matching:
        pytest.fail(f"log group {name} (Output FunctionLogGroupName) does not exist")
    assert matching[0].get("retentionInDays") is not None


def test_function_writes_to_declared_log_group(stack_outputs: StackOutputs) -> None:
    """The function's LoggingConfig names the FunctionLogGroupName group."""
    configuration = _function_configuration(stack_outputs)
    assert configuration["LoggingConfig"]["LogGroup"] == stack_outputs["FunctionLogGroupName"]


def test_function_runs_in_private_subnets(stack_outputs: StackOutputs) -> None:
    """The function's VpcConfig has exactly the PrivateSubnetIds subnets."""
    configuration = _function_configuration(stack_outputs)
    expected = {subnet.strip() for subnet in stack_outputs["PrivateSubnetIds"].split(",")}
    assert set(configuration["VpcConfig"]["SubnetIds"]) == expected


def test_function_uses_its_security_group(stack_outputs: StackOutputs) -> None:
    """The function's VpcConfig has only the FunctionSecurityGroupId group."""
    configuration = _function_configuration(stack_outputs)
    assert configuration["VpcConfig"]["SecurityGroupIds"] == [stack_outputs["FunctionSecurityGroupId"]]


def test_function_is_in_stack_vpc(stack_outputs: StackOutputs) -> None:
    """The function's VpcConfig names the VpcId Output."""
    configuration = _function_configuration(stack_outputs)
    assert configuration["VpcConfig"]["VpcId"] == stack_outputs["VpcId"]
