"""Stack Outputs for the integration tests: from CloudFormation, or from the local stack's file.

With ``AWS_SAM_STACK_NAME`` set, the Outputs come from CloudFormation ``DescribeStacks``
with the user's credentials and region. Otherwise they come from
``.local/stack-outputs.json``, which the local stack writes in the same
``[{"OutputKey": ..., "OutputValue": ...}]`` shape. A missing key fails the test with
the key's name.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

STACK_NAME_VARIABLE = "AWS_SAM_STACK_NAME"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
LOCAL_OUTPUTS_FILE = REPOSITORY_ROOT / ".local" / "stack-outputs.json"
LOCAL_STACK_NAME = "local"
PROBE_TIMEOUT_SECONDS = 2.0


def stack_name_from_environment() -> str | None:
    """Return ``AWS_SAM_STACK_NAME``, or None when it is unset or blank."""
    return os.environ.get(STACK_NAME_VARIABLE, "").strip() or None


local_only = pytest.mark.skipif(
    stack_name_from_environment() is not None,
    reason="reads the database directly, which is private in a deployed stack; "
    "there the stored and duplicate responses show what was stored",
)
aws_only = pytest.mark.skipif(
    stack_name_from_environment() is None,
    reason="checks deployed resources through the AWS APIs: set AWS_SAM_STACK_NAME to run it against a deployed stack",
)


class OutputsError(RuntimeError):
    """The Outputs could not be read."""


@dataclass(frozen=True)
class StackOutputs:
    """The Outputs of one stack, and where they were read from."""

    stack_name: str
    values: dict[str, str]
    source: str
    is_aws: bool

    def __getitem__(self, key: str) -> str:
        """Return an Output's value; fail the test, naming the key and stack, when it is missing."""
        if key not in self.values:
            pytest.fail(f"Output '{key}' is missing from stack {self.stack_name} ({self.source})")
        return self.values[key]

    def get(self, key: str) -> str | None:
        """Return an Output's value, or None when the stack has no such Output."""
        return self.values.get(key)


def outputs_from_list(items: Any, *, where: str) -> dict[str, str]:
    """Turn a describe-stacks Outputs list into a dict of OutputKey to OutputValue.

    Raises
    ------
    OutputsError
        If ``items`` is not a list of objects with OutputKey and OutputValue.
    """
    if not isinstance(items, list):
        raise OutputsError(f"Outputs in {where} must be a list of {{OutputKey, OutputValue}} objects")
    try:
        return {str(item["OutputKey"]): str(item["OutputValue"]) for item in items}
    except (TypeError, KeyError) as exc:
        raise OutputsError(f"Outputs in {where} must be a list of {{OutputKey, OutputValue}} objects") from exc


def outputs_from_file(path: Path = LOCAL_OUTPUTS_FILE) -> StackOutputs:
    """Read the Outputs the local stack wrote.

    Raises
    ------
    OutputsError
        If the file is missing or malformed.
    """
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OutputsError(f"{path} not found: start the local stack with 'make local'") from exc
    except json.JSONDecodeError as exc:
        raise OutputsError(f"{path} is not valid JSON: {exc}") from exc
    return StackOutputs(
        stack_name=LOCAL_STACK_NAME,
        values=outputs_from_list(items, where=str(path)),
        source=str(path),
        is_aws=False,
    )


def outputs_from_cloudformation(stack_name: str, client: Any = None) -> StackOutputs:
    """Read a deployed stack's Outputs with CloudFormation ``DescribeStacks``.

    Parameters
    ----------
    stack_name:
        The stack's name or ARN.
    client:
        A boto3 CloudFormation client; by default one with the user's credentials and region.

    Raises
    ------
    OutputsError
        If the stack does not exist or cannot be described.
    """
    import botocore.exceptions

    if client is None:
        import boto3

        client = boto3.client("cloudformation")
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except botocore.exceptions.ClientError as exc:
        raise OutputsError(f"describing stack {stack_name} failed: {exc}") from exc
    if not stacks:
        raise OutputsError(f"stack {stack_name} not found")
    return StackOutputs(
        stack_name=stack_name,
        values=outputs_from_list(stacks[0].get("Outputs", []), where=f"stack {stack_name}"),
        source=f"CloudFormation in {client.meta.region_name}",
        is_aws=True,
    )


def accepts_connections(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Return whether a TCP server listens at the host and port of ``url``."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def local_stack_is_running(outputs: StackOutputs) -> bool:
    """Return whether the local stack that wrote ``outputs`` still serves its webhook and AWS endpoint."""
    urls = [outputs.get("WebhookUrl"), outputs.get("AwsEndpointUrl")]
    return all(url is not None and accepts_connections(url) for url in urls)
