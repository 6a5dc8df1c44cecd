"""Secrets Manager on 127.0.0.1: moto's server, started in this process.

The function reaches it through ``AWS_ENDPOINT_URL_SECRETS_MANAGER``, the endpoint variable
the AWS SDKs read, with dummy credentials. Nothing here talks to real AWS.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

logger = logging.getLogger(__name__)

LOCAL_REGION = "us-east-1"

# moto accepts any credentials; these make a stray call to real AWS fail instead of
# succeeding with someone's real keys.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class LocalSecretsManager:
    """moto's server on a loopback port, with helpers to create and rotate secrets."""

    def __init__(self, port: int = 0) -> None:
        self.host = "127.0.0.1"
        # With port 0 the server binds a free port itself, so no other process can take
        # the port between choosing and binding it. start() reads the bound port.
        self.port = port
        self._server: ThreadedMotoServer | None = None
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def function_environment(self) -> dict[str, str]:
        """Return the environment variables that point an AWS client at this server."""
        return {
            **DUMMY_CREDENTIALS,
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint_url,
        }

    def start(self) -> None:
        """Start moto's server in a background thread."""
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the local stack prints its own lines.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        logger.info("moto Secrets Manager listening on %s", self.endpoint_url)

    def stop(self) -> None:
        """Stop the server; every secret it held is gone."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._client = None

    def client(self) -> Any:
        """Return a boto3 Secrets Manager client bound to this server (tests and set-up only)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "secretsmanager",
                region_name=LOCAL_REGION,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
        return self._client

    def create_secret(self, name: str, value: str | dict[str, Any] | list[Any]) -> str:
        """Create a secret and return its ARN; a dict or list value is stored as JSON."""
        text = value if isinstance(value, str) else json.dumps(value)
        response = self.client().create_secret(Name=name, SecretString=text)
        return str(response["ARN"])

    def put_secret_value(self, secret_id: str, value: str | dict[str, Any] | list[Any]) -> None:
        """Store a new current value, as a rotation or an operator's put-secret-value does."""
        text = value if isinstance(value, str) else json.dumps(value)
        self.client().put_secret_value(SecretId=secret_id, SecretString=text)

    def get_secret_string(self, secret_id: str) -> str:
        """Return the current value of a secret."""
        return str(self.client().get_secret_value(SecretId=secret_id)["SecretString"])

