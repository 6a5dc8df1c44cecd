"""Re-sign the sample events in events/ with a fresh timestamp (``make sign-events``).

Each file listed in ``events/manifest.json`` is signed per its ``sign`` mode and written
back. Only the ``stripe-signature`` header and ``requestContext.time``/``timeEpoch``
change, never the body. Generated files (the oversized body) are written too.

The signing secret is ``--secret`` when given. Otherwise it is read from the running
local stack: the WebhookSigningSecretArn and AwsEndpointUrl Outputs in
``.local/stack-outputs.json`` name the secret and moto's endpoint. Then the event
variables for ``sam local invoke`` are written to ``.local/env.json``: a copy of
``events/env.json`` with every ``<OutputKey from .local/stack-outputs.json>`` placeholder
replaced by the local stack's value.

Fresh signatures pass the function's check for the tolerance (300 s by default), so
invoke the events within that time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts scripts/ on the path, not the repository root.
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from local_stack.aws import DUMMY_CREDENTIALS, LOCAL_REGION  # noqa: E402
from local_stack.signing import (  # noqa: E402
    DEFAULT_TOLERANCE_SECONDS,
    ENV_VARS_NAME,
    EventFileError,
    resign_events,
)

DEFAULT_EVENTS_DIR = REPOSITORY_ROOT / "events"
DEFAULT_OUTPUTS_FILE = REPOSITORY_ROOT / ".local" / "stack-outputs.json"
SECRET_PREFIX = "whsec_"
PLACEHOLDER = re.compile(r"<(?P<key>[A-Za-z0-9]+) from \.local/stack-outputs\.json>")


class SigningSetupError(RuntimeError):
    """The signing secret or the local stack's Outputs could not be read."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Re-sign events/*.json per events/manifest.json with a fresh timestamp.",
    )
    parser.add_argument(
        "--secret",
        help="signing secret (whsec_...); default: the local stack's secret, read through .local/stack-outputs.json",
    )
    parser.add_argument(
        "--events-dir",
        type=Path,
        default=DEFAULT_EVENTS_DIR,
        help="folder with manifest.json and the event files (default: events/)",
    )
    parser.add_argument(
        "--tolerance",
        type=int,
        default=DEFAULT_TOLERANCE_SECONDS,
        help="the function's SIGNATURE_TOLERANCE_SECONDS, in seconds; stale signatures are older than this "
        f"(default: {DEFAULT_TOLERANCE_SECONDS})",
    )
    parser.add_argument(
        "--outputs-file",
        type=Path,
        default=DEFAULT_OUTPUTS_FILE,
        help="the local stack's Outputs, read when --secret is not given (default: .local/stack-outputs.json)",
    )
    arguments = parser.parse_args(argv)
    if arguments.secret is not None and not arguments.secret.startswith(SECRET_PREFIX):
        parser.error(f"--secret must start with '{SECRET_PREFIX}', the prefix of Stripe signing secrets")
    if arguments.tolerance <= 0:
        parser.error(f"--tolerance {arguments.tolerance} is invalid: use a positive number of seconds")
    return arguments


def read_outputs(outputs_file: Path) -> dict[str, str]:
    """Read a describe-stacks style Outputs list into a dict of OutputKey to OutputValue.

    Raises
    ------
    SigningSetupError
        If the file is missing or not a list of OutputKey/OutputValue objects.
    """
    try:
        raw = json.loads(outputs_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SigningSetupError(
            f"no local stack found ({outputs_file} does not exist): start one with 'make local' in another "
            "terminal, or pass the secret with --secret whsec_... (make sign-events SECRET=whsec_...)"
        ) from None
    except json.JSONDecodeError as exc:
        raise SigningSetupError(f"{outputs_file} is not valid JSON: {exc}") from exc
    try:
        return {str(item["OutputKey"]): str(item["OutputValue"]) for item in raw}
    except (TypeError, KeyError) as exc:
        raise SigningSetupError(
            f"{outputs_file} must be a JSON list of {{\"OutputKey\": ..., \"OutputValue\": ...}} objects"
        ) from exc


def require_output(outputs: dict[str, str], key: str, outputs_file: Path) -> str:
    """Return one Output's value.

    Raises
    ------
    SigningSetupError
        If the Output is missing.
    """
    if key not in outputs:
        raise SigningSetupError(f"Output '{key}' is missing from {outputs_file}: restart the local stack (make local)")
    return outputs[key]


def newest_secret(secret_string: str) -> str:
    """Return the secret to sign with from a stored value: ``whsec_...``, or a JSON array newest first."""
    if secret_string.lstrip().startswith("["):
        try:
            values = json.loads(secret_string)
        except json.JSONDecodeError as exc:
            raise SigningSetupError(f"the signing secret starts with '[' but is not a JSON array: {exc}") from exc
        if not values:
            raise SigningSetupError("the signing secret is an empty JSON array: store at least one whsec_... value")
        return str(values[0])
    return secret_string


def fetch_local_secret(outputs: dict[str, str], outputs_file: Path) -> str:
    """Read the signing secret from the local stack's Secrets Manager (moto).

    Raises
    ------
    SigningSetupError
        If an Output is missing or moto is not reachable.
    """
    import boto3
    import botocore.exceptions

    endpoint_url = require_output(outputs, "AwsEndpointUrl", outputs_file)
    secret_arn = require_output(outputs, "WebhookSigningSecretArn", outputs_file)
    client = boto3.client(
        "secretsmanager",
        region_name=LOCAL_REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    try:
        secret_string = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    except botocore.exceptions.EndpointConnectionError:
        raise SigningSetupError(
            f"the local stack in {outputs_file} is not running (no server listens at {endpoint_url}): start it with "
            "'make local', or pass the secret with --secret whsec_..."
        ) from None
    except botocore.exceptions.ClientError as exc:
        raise SigningSetupError(f"reading secret {secret_arn} from {endpoint_url} failed: {exc}") from exc
    return newest_secret(secret_string)


def fill_env_vars(template: dict[str, Any], outputs: dict[str, str], outputs_file: Path) -> dict[str, Any]:
    """Return a copy of an env.json template with each Output placeholder replaced by its value.

    Raises
    ------
    SigningSetupError
        If a placeholder names an Output that the local stack did not write.
    """

    def replace(match: re.Match[str]) -> str:
        return require_output(outputs, match.group("key"), outputs_file)

    return {
        function: {name: PLACEHOLDER.sub(replace, str(value)) for name, value in variables.items()}
        for function, variables in template.items()
    }


def write_local_env_vars(events_dir: Path, outputs: dict[str, str], outputs_file: Path) -> Path:
    """Write ``<outputs folder>/env.json``: events/env.json filled with the local stack's values."""
    template = json.loads((events_dir / ENV_VARS_NAME).read_text(encoding="utf-8"))
    target = outputs_file.parent / ENV_VARS_NAME
    target.write_text(json.dumps(fill_env_vars(template, outputs, outputs_file), indent=2) + "\n", encoding="utf-8")
    return target


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Re-sign the event files and print one line per file; return the exit status."""
    arguments = parse_arguments(argv)
    events_dir: Path = arguments.events_dir
    outputs: dict[str, str] | None = None
    try:
        if arguments.secret is not None:
            secret = arguments.secret
            source = "--secret"
        else:
            outputs = read_outputs(arguments.outputs_file)
            secret = fetch_local_secret(outputs, arguments.outputs_file)
            source = f"the local stack ({display_path(arguments.outputs_file)})"
        now = int(time.time())
        signed = resign_events(events_dir, secret, now=now, tolerance_seconds=arguments.tolerance)
        env_file = write_local_env_vars(events_dir, outputs, arguments.outputs_file) if outputs else None
    except (SigningSetupError, EventFileError) as exc:
        print(f"sign-events: {exc}", file=sys.stderr)
        return 2

    for item in signed:
        if item.timestamp is not None:
            header = f"t={item.timestamp}"
        elif item.sign == "none":
            header = "no stripe-signature header"
        else:
            header = "header without a valid t"
        print(f"{display_path(item.path)}: {item.sign}, {header}, body {item.body_bytes} bytes")
    expiry = datetime.fromtimestamp(now + arguments.tolerance, UTC)
    print(
        f"sign-events: signed {len(signed)} files with the secret from {source}; fresh signatures pass until "
        f"{expiry:%H:%M:%S} UTC (tolerance {arguments.tolerance} s)"
    )
    if env_file is not None:
        print(f"sign-events: wrote {display_path(env_file)} for sam local invoke --env-vars")
    return 0


if __name__ == "__main__":
    sys.exit(main())
